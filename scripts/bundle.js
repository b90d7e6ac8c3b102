// Bundles the compiled CLI into one ES module, dist/src/cli/bundle.js (and the layer
// compression worker beside it as dist/src/cli/_worker.js), after `tsc`.
//
// Why: Node 20 has no compile cache for ES modules, and resolving, reading and linking the
// ~140 modules of polyarch and its dependencies took ~200 ms of every command on a
// 2-core machine, a quarter of a whole native Dockerfile build. bin/polyarch.js loads the
// bundle when it is at least as new as dist/src/cli/main.js (tsc rewrites every file, so a
// `tsc` without this step falls back to the modules themselves and never runs stale code).
//
// Both files stay in dist/src/cli/ so that URLs made from import.meta.url resolve as they do
// for the unbundled modules: ../../../package.json (main.ts) and ./_worker.js (layer/pool.ts).
import { build } from "esbuild";
import { readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "dist", "src", "cli");

// Chunks of an earlier build would otherwise pile up (their names are content hashes).
for (const f of readdirSync(cli)) if (/^bundle[-.]/.test(f)) rmSync(path.join(cli, f));

await build({
  entryPoints: {
    bundle: path.join(cli, "main.js"),
    _worker: path.join(root, "dist", "src", "layer", "_worker.js"),
  },
  outdir: cli,
  bundle: true,
  // Each command's code in its own chunk, loaded when that command runs (main.ts imports them lazily).
  splitting: true,
  chunkNames: "bundle-[hash]",
  platform: "node",
  format: "esm",
  target: "node20",
  // Loaded lazily with import(): a CommonJS package split into a chunk of its own would
  // export only `default` there, so Node loads it from node_modules as it does unbundled.
  external: ["tar-stream"],
  // CommonJS dependencies (dockerfile-ast's UMD modules) call require(): give them Node's.
  banner: {
    js: "import { createRequire as __polyarchRequire } from 'node:module'; const require = __polyarchRequire(import.meta.url);",
  },
  sourcemap: true,
  logLevel: "warning",
  allowOverwrite: false,
});
