import type { Readable, Writable } from "node:stream";
import { isPolyarchError } from "../errors.js";

/** Everything the CLI touches of the outside world, so tests can run it in-process. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  env: Record<string, string | undefined>;
  cwd: string;
  stdin?: Readable;
}

export function humanSize(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "))
    .join("\n");
}

/** Prints an error as one sentence plus a hint; a stack only with --debug. */
export function printError(io: CliIO, e: unknown, debug: boolean): void {
  if (isPolyarchError(e)) {
    io.stderr.write(`polyarch: error: ${e.message}\n`);
    if (e.hint) io.stderr.write(`  hint: ${e.hint}\n`);
    if (debug && e.stack) io.stderr.write(`${e.stack}\n`);
    return;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  io.stderr.write(`polyarch: internal error: ${err.message}\n`);
  io.stderr.write(
    debug && err.stack ? `${err.stack}\n` : "  hint: run again with --debug for details, and report it.\n",
  );
}
