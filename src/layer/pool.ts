/**
 * Layer compression in worker threads. The main thread streams each layer's tar, hashes it
 * (diffID) and cuts it into segments (deflate.ts, SEGMENT_SIZE); workers compress segments
 * as they come, so one big layer (over INLINE_BYTES) uses every core, and several layers
 * share the workers; smaller layers stay on the main thread (see writeLayer). The bytes are
 * exactly those of the sequential encoder (`writeLayer` on the main thread): the segments
 * are part of the format, not of the scheduling.
 *
 * Memory is bounded: at most `2 × workers + 1` segments of a layer are in flight before the
 * oldest is written out.
 */
import { statSync } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { Digester } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import { crc32, GZIP_HEADER, gzipTrailer, SEGMENT_SIZE } from "./deflate.js";
import {
  layerBlob,
  layerTar,
  type LayerBlob,
  type LayerEntry,
  type TarOptions,
  writeLayer,
} from "./index.js";

/** Layers of up to this many bytes are compressed on the calling thread (see writeLayer). */
const INLINE_BYTES = 16 * 1024 * 1024;

/**
 * Size of the output buffers workers write into: more than any segment compresses to (the
 * encoder never writes more than a stored block's 5 bytes per 64 KiB on top of the input).
 */
const OUT_BYTES = SEGMENT_SIZE + 4096;

/** Bytes of history a segment starts from (deflate's window). */
const WINDOW = 32 * 1024;

interface Task {
  dictionary: Uint8Array;
  data: Uint8Array;
  last: boolean;
  out: Uint8Array;
  resolve: (out: Uint8Array) => void;
  reject: (e: unknown) => void;
}

export class LayerPool {
  readonly #size: number;
  #workers: Worker[] = [];
  #idle: Worker[] = [];
  #queue: Task[] = [];
  #running = new Map<Worker, Task>();
  /**
   * Segment buffers the workers gave back, filled again instead of allocating: a 512 MiB
   * layer otherwise leaves 512 dead 1 MiB buffers for the garbage collector, which lets
   * tens of megabytes of them pile up before it runs.
   */
  #free: Uint8Array[] = [];
  /** Output buffers, likewise: a worker writes a segment's compressed bytes into one. */
  #freeOut: Uint8Array[] = [];
  /** How many buffers of each kind are kept: as many as can be in flight, and one more. */
  get #keep(): number {
    return 2 * this.#size + 2;
  }
  #closed = false;

  readonly #inlineLimit: number;

  /** `inlineBytes`: the largest layer compressed on this thread (default INLINE_BYTES). */
  constructor(size: number, opts: { inlineBytes?: number } = {}) {
    this.#size = Math.max(1, size);
    this.#inlineLimit = opts.inlineBytes ?? INLINE_BYTES;
  }

  /** Every worker at once on first use: they boot while the first segment is read. */
  #start(): void {
    if (this.#workers.length) return;
    for (let i = 0; i < this.#size; i++) {
      const w = new Worker(new URL("./_worker.js", import.meta.url));
      w.on("message", (m: { out?: Uint8Array; data?: Uint8Array; error?: string }) => {
        if (m.data?.byteLength === SEGMENT_SIZE && this.#free.length < this.#keep) this.#free.push(m.data);
        const t = this.#running.get(w);
        this.#running.delete(w);
        this.#idle.push(w);
        if (t) {
          if (m.out) t.resolve(m.out);
          else
            t.reject(
              new PolyarchError({
                code: "E_INTERNAL",
                message: `layer compression failed: ${m.error ?? "unknown error"}`,
                hint: "Run again with --debug.",
              }),
            );
        }
        this.#dispatch();
      });
      // A worker that dies (it catches its own errors, so: out of memory, say) fails every
      // task not yet done, so no layer waits for a worker that will never answer.
      w.on("error", (e) => {
        this.#closed = true;
        for (const t of [...this.#running.values(), ...this.#queue]) t.reject(e);
        this.#running.clear();
        this.#queue = [];
      });
      this.#workers.push(w);
      this.#idle.push(w);
    }
  }

  #dispatch(): void {
    while (this.#idle.length && this.#queue.length) {
      const w = this.#idle.pop()!;
      const t = this.#queue.shift()!;
      this.#running.set(w, t);
      w.postMessage({ dictionary: t.dictionary, data: t.data, last: t.last, out: t.out }, [
        t.data.buffer as ArrayBuffer,
        t.out.buffer as ArrayBuffer,
      ]);
    }
  }

  #compress(dictionary: Uint8Array, data: Uint8Array, last: boolean): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error("LayerPool: closed"));
    this.#start();
    return new Promise((resolve, reject) => {
      this.#queue.push({
        dictionary,
        data,
        last,
        out: this.#freeOut.pop() ?? new Uint8Array(OUT_BYTES),
        resolve,
        reject,
      });
      this.#dispatch();
    });
  }

  /**
   * Writes a gzip-compressed layer to `dest` (temp file, then rename), as `writeLayer` would.
   * A layer of up to INLINE_BYTES (a Go binary) is compressed on this thread, however many
   * are being compressed at once; only a bigger one goes to the workers, a segment at a time.
   * Workers cost more than they give while anything else keeps the cores busy: each boots and
   * warms its own JIT, and two encoders side by side run slower per byte. Measured on 2 cores,
   * six 9 MB binaries of a one-line edit while their go builds run: this process used 2.4–3.2
   * CPU-seconds this way against 4.1–4.9 when a second binary went to the workers, and the
   * build took 5.4–7.0 s against 6.9–7.7 s. A 512 MiB layer still gains from them (13 s against
   * 19 s).
   */
  async writeLayer(entries: LayerEntry[], opts: TarOptions, dest: string): Promise<LayerBlob> {
    let bytes = 0;
    for (const e of entries) {
      if (e.type === "file")
        bytes += "data" in e.source ? e.source.data.byteLength : statSync(e.source.file).size;
      if (bytes > this.#inlineLimit) break;
    }
    if (bytes <= this.#inlineLimit) return writeLayer(entries, opts, dest);
    await mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const fh = await open(tmp, "wx", 0o644);
    const uncompressed = new Digester();
    const compressed = new Digester();
    let crc = 0;
    const inflight: Promise<Uint8Array>[] = [];
    const write = async (b: Uint8Array) => {
      compressed.update(b);
      await fh.write(b);
    };
    // A segment's compressed bytes, written; then its buffer is the pool's again.
    const writeOut = async (b: Uint8Array) => {
      await write(b);
      this.#recycle(b);
    };
    // 1. Segments go out in order, each with the WINDOW bytes before it; a full one waits
    //    until more input shows it is not the last.
    let prevTail = new Uint8Array(0);
    let held: Uint8Array | undefined;
    let seg = this.#free.pop() ?? new Uint8Array(SEGMENT_SIZE);
    let fill = 0;
    const send = async (data: Uint8Array, last: boolean) => {
      const dictionary = prevTail;
      // Taken before the segment's buffer is handed (transferred) to a worker.
      prevTail = data.slice(Math.max(0, data.length - WINDOW));
      const p = this.#compress(dictionary, data, last);
      p.catch(() => {}); // awaited in order below
      inflight.push(p);
      while (inflight.length > 2 * this.#size + 1) await writeOut(await inflight.shift()!);
    };
    try {
      await write(GZIP_HEADER);
      for await (const chunk of layerTar(entries, opts)) {
        uncompressed.update(chunk);
        crc = crc32(chunk, crc);
        let off = 0;
        while (off < chunk.length) {
          if (held) {
            await send(held, false);
            held = undefined;
          }
          const n = Math.min(chunk.length - off, SEGMENT_SIZE - fill);
          seg.set(chunk.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === SEGMENT_SIZE) {
            held = seg;
            seg = this.#free.pop() ?? new Uint8Array(SEGMENT_SIZE);
            fill = 0;
          }
        }
      }
      // 2. The last segment: the partial one, or the held full one, or an empty stream.
      if (held && fill === 0) await send(held, true);
      else {
        if (held) await send(held, false);
        await send(seg.slice(0, fill), true);
      }
      while (inflight.length) await writeOut(await inflight.shift()!);
      await write(gzipTrailer(crc, uncompressed.size));
      await fh.sync();
      await fh.close();
      await rename(tmp, dest);
    } catch (e) {
      await Promise.allSettled(inflight);
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw e;
    }
    return layerBlob(compressed, uncompressed, dest);
  }

  /** Keeps a worker's output buffer for the next segment (a bounded number of them). */
  #recycle(out: Uint8Array): void {
    const b = out.buffer as ArrayBuffer;
    if (b.byteLength === OUT_BYTES && this.#freeOut.length < this.#keep)
      this.#freeOut.push(new Uint8Array(b));
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#queue) t.reject(new Error("LayerPool: closed"));
    this.#queue = [];
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers = [];
    this.#idle = [];
  }
}
