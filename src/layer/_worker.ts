/** Worker thread body: compresses one layer off the main thread (see pool.ts). */
import { parentPort } from "node:worker_threads";
import { type LayerEntry, type TarOptions, writeLayer } from "./index.js";

parentPort?.on(
  "message",
  async (msg: { id: number; entries: LayerEntry[]; opts: TarOptions; dest: string }) => {
    try {
      const blob = await writeLayer(msg.entries, msg.opts, msg.dest);
      parentPort?.postMessage({ id: msg.id, blob });
    } catch (e) {
      parentPort?.postMessage({
        id: msg.id,
        error: {
          message: (e as Error).message,
          code: (e as { code?: string }).code,
          hint: (e as { hint?: string }).hint,
        },
      });
    }
  },
);
