/** Worker thread body: compresses one layer off the main thread (see pool.ts). */
import { parentPort } from "node:worker_threads";
import { type LayerEntry, type TarOptions, writeLayer } from "./index.js";

interface Job {
  id: number;
  entries: LayerEntry[];
  opts: TarOptions;
  dest: string;
}

parentPort?.on("message", (msg: Job) => {
  writeLayer(msg.entries, msg.opts, msg.dest).then(
    (blob) => parentPort?.postMessage({ id: msg.id, blob }),
    (e: unknown) => {
      const err = e as { message?: string; code?: string; hint?: string };
      parentPort?.postMessage({
        id: msg.id,
        error: { message: err.message ?? String(e), code: err.code, hint: err.hint },
      });
    },
  );
});
