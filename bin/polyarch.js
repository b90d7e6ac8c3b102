#!/usr/bin/env node
import { statSync } from "node:fs";
import { setFlagsFromString } from "node:v8";

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

// From here on the young generation stays at the size it has instead of doubling up to 16 MB
// semi-spaces: after a full collection on a big build context (16,000 files) V8 grew it, and
// those semi-spaces were most of the peak RSS growth from a 32 MiB to a 512 MiB context (163 →
// 139 MB with this; build time unchanged). V8 reads the factor whenever it would grow the young
// generation, so it takes effect though set after start; set after the modules are loaded, so
// that start-up (which allocates the most) keeps V8's default.
setFlagsFromString("--semi-space-growth-factor=1");

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
