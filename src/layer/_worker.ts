/** Worker thread body: compresses one segment of a layer off the main thread (see pool.ts). */
import { parentPort } from "node:worker_threads";
import { deflateSegment } from "./deflate.js";

interface Job {
  dictionary: Uint8Array;
  data: Uint8Array;
  last: boolean;
  /** A buffer of the pool's to write the compressed bytes into (see LayerPool). */
  out?: Uint8Array;
}

parentPort?.on("message", (msg: Job) => {
  try {
    const out = deflateSegment(msg.dictionary, msg.data, msg.last, msg.out);
    // The input goes back too, for the pool to fill with the next segment.
    parentPort?.postMessage({ out, data: msg.data }, [
      out.buffer as ArrayBuffer,
      msg.data.buffer as ArrayBuffer,
    ]);
  } catch (e) {
    parentPort?.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
});
