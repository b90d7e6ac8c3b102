/**
 * A live view for terminals: one line per image and platform (waiting, compiling, layering,
 * uploading with bytes, done), redrawn in place at most ten times a second. Only used when
 * stderr is a TTY and not in CI; everywhere else progress is plain timestamped lines.
 */
import type { Writable } from "node:stream";
import { humanSize } from "./_io.js";

export class LiveView {
  readonly #out: Writable;
  readonly #rows = new Map<string, string>();
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;
  #header = "";

  constructor(out: Writable) {
    this.#out = out;
  }

  header(s: string): void {
    this.#header = s;
    this.#schedule();
  }

  set(key: string, status: string): void {
    this.#rows.set(key, status);
    this.#schedule();
  }

  bytes(key: string, sent: number): void {
    this.set(key, `uploading ${humanSize(sent)}`);
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#draw();
    }, 100);
  }

  #draw(): void {
    const width = Math.max(...[...this.#rows.keys()].map((k) => k.length), 10);
    const lines = [this.#header, ...[...this.#rows].map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].filter(
      Boolean,
    );
    // Move up over what was drawn last time, clear it, draw again.
    let s = this.#drawn ? `\x1b[${this.#drawn}A` : "";
    for (const l of lines) s += `\x1b[2K${l}\n`;
    this.#out.write(s);
    this.#drawn = lines.length;
  }

  finish(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#draw();
  }
}
