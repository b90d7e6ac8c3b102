import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { PolyarchError } from "../errors.js";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  signal?: AbortSignal;
  /** Written to standard input, which is then closed. */
  input?: string;
}

/** Runs a program and collects its output; never throws for a non-zero exit. */
export type Exec = (file: string, args: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;

export const exec: Exec = (file, args, opts = {}) =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: opts.env,
      signal: opts.signal,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (opts.input !== undefined) {
      // A program that exits without reading its input: EPIPE, not a crash (its exit code tells).
      child.stdin?.on("error", () => {});
      child.stdin?.end(opts.input);
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => out.push(c));
    child.stderr?.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e: NodeJS.ErrnoException) => {
      // spawn says ENOENT both for a missing program and a missing working directory; the
      // second is the user's path, not a missing tool (issue 8).
      if (e.code === "ENOENT" && opts.cwd !== undefined && !isDir(opts.cwd)) {
        reject(
          new PolyarchError({
            code: "E_INPUT",
            message: `the directory ${opts.cwd} does not exist (or is not a directory)`,
            hint: "Check the path given for the package or image directory.",
            cause: e,
          }),
        );
      } else reject(e);
    });
    child.on("close", (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      }),
    );
  });

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** True when `file` is a regular file someone may execute. */
export function isExecutable(file: string): boolean {
  try {
    const st = statSync(file);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** True when `program` is an executable file in one of PATH's directories. */
export function onPath(program: string, env: Record<string, string | undefined>): boolean {
  return (env["PATH"] ?? "").split(":").some((d) => d !== "" && isExecutable(`${d}/${program}`));
}
