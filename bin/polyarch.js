#!/usr/bin/env node
import { statSync } from "node:fs";

// The one-file bundle of the CLI (scripts/bundle.js) loads ~200 ms faster than the ~140
// modules it is made of; it is used only when at least as new as the compiled modules.
const mtime = (rel) => {
  try {
    return statSync(new URL(rel, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};
const bundled = mtime("../dist/src/cli/bundle.js") >= mtime("../dist/src/cli/main.js");
const { main } = bundled
  ? await import("../dist/src/cli/bundle.js")
  : await import("../dist/src/cli/main.js");

const controller = new AbortController();
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => controller.abort());
const code = await main(
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    stdin: process.stdin,
  },
  controller.signal,
);
process.exitCode = code;
