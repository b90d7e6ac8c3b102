/**
 * Layer compression in worker threads, so several layers compress at once while the main
 * thread keeps starting compiles. Output is identical to `writeLayer` on the main thread:
 * the same code runs, only elsewhere.
 */
import { Worker } from "node:worker_threads";
import { PolyarchError } from "../errors.js";
import type { LayerBlob, LayerEntry, TarOptions } from "./index.js";

interface Pending {
  resolve: (b: LayerBlob) => void;
  reject: (e: unknown) => void;
}

export class LayerPool {
  readonly #size: number;
  #workers: Worker[] = [];
  #idle: Worker[] = [];
  #queue: (() => void)[] = [];
  #pending = new Map<number, Pending>();
  #next = 0;

  constructor(size: number) {
    this.#size = Math.max(1, size);
  }

  #spawn(): Worker {
    const w = new Worker(new URL("./_worker.js", import.meta.url));
    w.on(
      "message",
      (m: { id: number; blob?: LayerBlob; error?: { message: string; code?: string; hint?: string } }) => {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        this.#release(w);
        if (!p) return;
        if (m.blob) p.resolve(m.blob);
        else
          p.reject(
            new PolyarchError({
              code: (m.error?.code as "E_TAR") ?? "E_INTERNAL",
              message: m.error?.message ?? "layer worker failed",
              hint: m.error?.hint ?? "Run again with --debug.",
            }),
          );
      },
    );
    w.on("error", (e) => {
      for (const [, p] of this.#pending) p.reject(e);
      this.#pending.clear();
    });
    this.#workers.push(w);
    return w;
  }

  #release(w: Worker): void {
    const next = this.#queue.shift();
    this.#idle.push(w);
    next?.();
  }

  async #acquire(): Promise<Worker> {
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#workers.length < this.#size) return this.#spawn();
    await new Promise<void>((r) => this.#queue.push(r));
    return this.#idle.pop()!;
  }

  async writeLayer(entries: LayerEntry[], opts: TarOptions, dest: string): Promise<LayerBlob> {
    const w = await this.#acquire();
    const id = this.#next++;
    return new Promise<LayerBlob>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      w.postMessage({ id, entries, opts, dest });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers = [];
    this.#idle = [];
  }
}
