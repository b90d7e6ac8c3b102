/**
 * polyarch build vs the same six `go build`s run in parallel by a shell, same flags.
 *
 *   cold:         empty GOCACHE (and an empty polyarch cache) for both
 *   warm:         a second build from a new checkout (new directory): GOCACHE and the polyarch
 *                 cache warm, as on any second run or in CI that restores both caches; the
 *                 shell relinks all six binaries, polyarch starts from the ones it kept for the
 *                 module, so go links none
 *   empty cache:  warm GOCACHE but an empty polyarch cache, so polyarch gzips all six layers
 *                 (~50 MB) that `go build` never produces; shown for what it costs
 *   no-change:    everything warm, outputs present: Go's own no-op vs polyarch's rebuild
 *
 * Prints each time (median of --runs) and the ratios the issue names as targets:
 * polyarch / shell ≤ 1.15 cold and warm, and a no-change rebuild < 0.5 s beyond Go's no-op.
 * Then the gzip encoder's throughput on the six binaries next to Node's native zlib.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { gzip } from "../src/layer/deflate.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLE = path.join(ROOT, "examples", "maintenance-proxy");
const PLATFORMS: [string, Record<string, string>][] = [
  ["linux/amd64", { GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1" }],
  ["linux/arm64", { GOOS: "linux", GOARCH: "arm64" }],
  ["linux/arm/v7", { GOOS: "linux", GOARCH: "arm", GOARM: "7" }],
  ["linux/386", { GOOS: "linux", GOARCH: "386" }],
  ["linux/ppc64le", { GOOS: "linux", GOARCH: "ppc64le" }],
  ["linux/s390x", { GOOS: "linux", GOARCH: "s390x" }],
];
function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
/** Runs per warm and no-change measurement, and per cold one (a cold run takes minutes). */
const RUNS = arg("--runs", 7);
const COLD_RUNS = arg("--cold-runs", 1);

const work = mkdtempSync(path.join(os.tmpdir(), "polyarch-bench-"));
const baseEnv = { ...process.env, SOURCE_DATE_EPOCH: "0" };

/** The shell baseline: all six builds started at once, then wait — as well as a shell can. */
function shellScript(outDir: string, src = EXAMPLE): string {
  const lines = PLATFORMS.map(([p, env]) => {
    const vars = Object.entries({ ...env, CGO_ENABLED: "0" })
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    return `(${vars} go build -trimpath -o ${outDir}/${p.replaceAll("/", "-")}/maintenance-proxy . ) &`;
  });
  return `set -e\ncd ${src}\n${lines.join("\n")}\nfor j in $(jobs -p); do wait $j; done\n`;
}

function time(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return ms / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const shell = (gocache: string, out: string, src = EXAMPLE) =>
  time("bash", ["-c", shellScript(out, src)], { ...baseEnv, GOCACHE: gocache });
const polyarch = (gocache: string, cache: string, out: string, src = EXAMPLE) =>
  time(
    process.execPath,
    [
      path.join(ROOT, "bin", "polyarch.js"),
      "build",
      src,
      "-q",
      "-p",
      PLATFORMS.map((p) => p[0]).join(","),
      "-o",
      `oci:${out}`,
    ],
    { ...baseEnv, GOCACHE: gocache, POLYARCH_CACHE_DIR: cache },
  );

let n = 0;
const fresh = (what: string) => path.join(work, `${what}-${n++}`);

console.log(
  `polyarch build vs six parallel go builds (${os.availableParallelism()} cores, ${spawnSync("go", ["version"]).stdout.toString().trim()}, node ${process.version})`,
);
try {
  // 1. Cold: nothing cached anywhere. Alternate the two so drift hits both.
  const cold = { shell: [] as number[], polyarch: [] as number[] };
  for (let i = 0; i < (process.argv.includes("--skip-cold") ? 0 : COLD_RUNS); i++) {
    cold.shell.push(shell(fresh("gocache"), fresh("bin")));
    cold.polyarch.push(polyarch(fresh("gocache"), fresh("cache"), fresh("oci")));
  }
  // 2. Warm Go cache, new outputs and an empty polyarch cache.
  const gocache = fresh("gocache");
  shell(gocache, fresh("bin"));
  const warm = { shell: [] as number[], polyarch: [] as number[] };
  for (let i = 0; i < RUNS; i++) {
    warm.shell.push(shell(gocache, fresh("bin")));
    warm.polyarch.push(polyarch(gocache, fresh("cache"), fresh("oci")));
  }
  // 3. A new checkout with both caches warm.
  const sharedCache = fresh("cache");
  polyarch(gocache, sharedCache, fresh("oci"));
  const checkout = () => {
    const dir = fresh("checkout");
    cpSync(EXAMPLE, dir, { recursive: true });
    return dir;
  };
  const fresh2 = { shell: [] as number[], polyarch: [] as number[] };
  for (let i = 0; i < RUNS; i++) {
    fresh2.shell.push(shell(gocache, fresh("bin"), checkout()));
    fresh2.polyarch.push(polyarch(gocache, sharedCache, fresh("oci"), checkout()));
  }
  // 4. No change: same outputs again; Go's no-op vs polyarch's no-change rebuild.
  const binOut = fresh("bin");
  const cache = fresh("cache");
  const oci = fresh("oci");
  shell(gocache, binOut);
  polyarch(gocache, cache, oci);
  const noop = { shell: [] as number[], polyarch: [] as number[] };
  for (let i = 0; i < RUNS; i++) {
    noop.shell.push(shell(gocache, binOut));
    noop.polyarch.push(polyarch(gocache, cache, oci));
  }

  const row = (name: string, r: { shell: number[]; polyarch: number[] }) => {
    const s = median(r.shell);
    const p = median(r.polyarch);
    console.log(
      `${name.padEnd(30)} shell ${s.toFixed(2).padStart(6)} s   polyarch ${p.toFixed(2).padStart(6)} s   ratio ${(p / s).toFixed(3)}x   (n=${r.shell.length})`,
    );
    return { s, p };
  };
  const c = cold.shell.length ? row("cold Go cache", cold) : { s: Number.NaN, p: Number.NaN };
  const k = row("warm (new checkout)", fresh2);
  const w = row("warm Go, empty polyarch cache", warm);
  const z = row("no change (rebuild)", noop);
  console.log("");
  const verdict = (r: number) => (Number.isNaN(r) ? "not run" : r <= 1.15 ? "MET" : "MISSED");
  console.log(`cold ratio:      ${(c.p / c.s).toFixed(3)}x   (target ≤ 1.15x)  ${verdict(c.p / c.s)}`);
  console.log(`warm ratio:      ${(k.p / k.s).toFixed(3)}x   (target ≤ 1.15x)  ${verdict(k.p / k.s)}`);
  console.log(
    `no-change extra: ${(z.p - z.s).toFixed(3)} s beyond Go's no-op (target < 0.5 s)  ${z.p - z.s < 0.5 ? "MET" : "MISSED"}`,
  );
  console.log(
    `empty polyarch cache: ${(w.p / w.s).toFixed(3)}x, +${(w.p - w.s).toFixed(2)} s to gzip six layers (no target of its own; see below)`,
  );

  // 5. What gzipping the six binaries costs, ours against Node's native zlib on the same bytes.
  const binRoot = path.join(cache, "bin");
  // One binary per platform: the cache keeps each both per checkout and per module.
  const byPlatform = new Map<string, Buffer>();
  for (const k of readdirSync(binRoot))
    for (const p of readdirSync(path.join(binRoot, k)))
      if (!byPlatform.has(p)) byPlatform.set(p, readFileSync(path.join(binRoot, k, p, "maintenance-proxy")));
  const bins = [...byPlatform.values()];
  const total = bins.reduce((n, b) => n + b.length, 0);
  const rate = (f: (b: Buffer) => Uint8Array) => {
    let best = Infinity;
    let size = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      size = bins.reduce((n, b) => n + f(b).length, 0);
      best = Math.min(best, performance.now() - t0);
    }
    return { mbs: total / 1e6 / (best / 1000), size };
  };
  const ours = rate(gzip);
  const z1 = rate((b) => gzipSync(b, { level: 1 }));
  const z6 = rate((b) => gzipSync(b, { level: 6 }));
  console.log("");
  console.log(`gzip of the six binaries (${(total / 1e6).toFixed(1)} MB, one thread):`);
  for (const [name, r] of [
    ["polyarch encoder", ours],
    ["node zlib level 1", z1],
    ["node zlib level 6", z6],
  ] as const) {
    console.log(
      `  ${name.padEnd(18)} ${r.mbs.toFixed(0).padStart(4)} MB/s   ${(r.size / 1e6).toFixed(2)} MB   (${(r.mbs / ours.mbs).toFixed(2)}x our speed, ${(r.size / ours.size).toFixed(3)}x our size)`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
