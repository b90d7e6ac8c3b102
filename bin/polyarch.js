#!/usr/bin/env node
import { main } from "../dist/src/cli/main.js";

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
