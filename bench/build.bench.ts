/**
 * polyarch build vs the same six `go build`s run in parallel by a shell, same flags.
 *
 *   cold:       empty GOCACHE (and an empty polyarch cache) for both
 *   warm:       warm GOCACHE, new outputs; polyarch's layer cache empty, so it compresses
 *               all six layers (what CI with a restored Go cache sees)
 *   checkout:   a new checkout (new directory) with warm GOCACHE and a warm polyarch cache, as
 *               CI that restores both caches sees: both relink, polyarch reuses its layers
 *   no-change:  everything warm, outputs present: Go's own no-op vs polyarch's rebuild
 *
 * Prints each time (median of --runs) and the ratios the issue names as targets:
 * polyarch / shell ≤ 1.15, and a no-change rebuild < 0.5 s beyond Go's no-op.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

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
const RUNS = arg("--runs", 5);
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
      `${name.padEnd(26)} shell ${s.toFixed(2).padStart(6)} s   polyarch ${p.toFixed(2).padStart(6)} s   ratio ${(p / s).toFixed(3)}x   (n=${r.shell.length})`,
    );
    return { s, p };
  };
  const c = cold.shell.length ? row("cold Go cache", cold) : { s: Number.NaN, p: Number.NaN };
  const w = row("warm Go, cold layer cache", warm);
  const k = row("new checkout, warm caches", fresh2);
  const z = row("no change (rebuild)", noop);
  console.log("");
  console.log(
    `cold ratio:      ${(c.p / c.s).toFixed(3)}x   (target ≤ 1.15x)  ${c.p / c.s <= 1.15 ? "MET" : "MISSED"}`,
  );
  console.log(
    `warm ratio:      ${(w.p / w.s).toFixed(3)}x   (target ≤ 1.15x)  ${w.p / w.s <= 1.15 ? "MET" : "MISSED"}  (polyarch compresses all six layers)`,
  );
  console.log(
    `checkout ratio:  ${(k.p / k.s).toFixed(3)}x   (target ≤ 1.15x)  ${k.p / k.s <= 1.15 ? "MET" : "MISSED"}  (both caches restored)`,
  );
  console.log(
    `no-change extra: ${(z.p - z.s).toFixed(3)} s beyond Go's no-op (target < 0.5 s)  ${z.p - z.s < 0.5 ? "MET" : "MISSED"}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
