/**
 * Dockerfile builds against the real builder alone, same machine, one run (issue 9):
 * 1. seed 001's native-only Dockerfile (FROM scratch; COPY static/; COPY app; CMD) with the
 *    maintenance proxy's real Go binary and a small static site, for linux/amd64 and
 *    linux/arm64 into an OCI layout: buildah bud (chroot, --layers, one platform per run, as
 *    it must) vs polyarch build -f, each with a cold cache every run; target ≥ 5×;
 * 2. the same with nothing changed and warm caches: polyarch's rebuild time; target < 1 s.
 * Medians of --runs (default 5), sides alternating.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = path.join(ROOT, "bin", "polyarch.js");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
// buildah names an oci: destination after its path, which must be lowercase.
const work = path.join(os.tmpdir(), `polyarch-dfbench-${process.pid}`);
mkdirSync(work, { recursive: true });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function run(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined> = process.env,
  cwd?: string,
): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"], ...(cwd ? { cwd } : {}) });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return ms;
}

try {
  const ctx = path.join(work, "ctx");
  mkdirSync(path.join(ctx, "static"), { recursive: true });
  // A small static site and the real binary of examples/maintenance-proxy.
  for (let i = 0; i < 30; i++)
    writeFileSync(
      path.join(ctx, "static", `page-${i}.html`),
      `<html><body>${"<p>maintenance</p>".repeat(500)}</body></html>\n`,
    );
  run(
    "go",
    ["build", "-trimpath", "-o", path.join(ctx, "app"), "."],
    {
      ...process.env,
      CGO_ENABLED: "0",
      PWD: path.join(ROOT, "examples", "maintenance-proxy"),
    },
    path.join(ROOT, "examples", "maintenance-proxy"),
  );
  chmodSync(path.join(ctx, "app"), 0o755);
  writeFileSync(
    path.join(ctx, "Dockerfile"),
    'FROM scratch\nCOPY static/ /srv/static/\nCOPY app /srv/app\nENV MODE=prod\nCMD ["/srv/app"]\n',
  );
  const storage = (dir: string) => {
    mkdirSync(dir, { recursive: true });
    const conf = path.join(dir, "storage.conf");
    writeFileSync(conf, `[storage]\ndriver = "vfs"\nrunroot = "${dir}/run"\ngraphroot = "${dir}/graph"\n`);
    return { ...process.env, CONTAINERS_STORAGE_CONF: conf };
  };
  const buildah = (dir: string) => {
    const env = storage(dir);
    let ms = 0;
    for (const p of ["linux/amd64", "linux/arm64"])
      ms += run(
        "buildah",
        [
          "bud",
          "--isolation",
          "chroot",
          "--layers",
          "--timestamp",
          "0",
          "--platform",
          p,
          "-f",
          path.join(ctx, "Dockerfile"),
          "-t",
          `oci:${dir}/out-${p.replace("/", "-")}:latest`,
          ctx,
        ],
        env,
      );
    return ms;
  };
  const polyarch = (cache: string, out: string) =>
    run(
      process.execPath,
      [
        BIN,
        "build",
        "-q",
        "-f",
        path.join(ctx, "Dockerfile"),
        ctx,
        "-p",
        "linux/amd64,linux/arm64",
        "-o",
        `oci:${out}`,
      ],
      {
        ...process.env,
        POLYARCH_CACHE_DIR: cache,
        SOURCE_DATE_EPOCH: "0",
      },
    );
  const bh: number[] = [];
  const pa: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const d = path.join(work, `r${i}`);
    bh.push(buildah(path.join(d, "bh")));
    pa.push(polyarch(path.join(d, "cache"), path.join(d, "pa")));
    rmSync(d, { recursive: true, force: true });
  }
  const warm: number[] = [];
  const warmBh: number[] = [];
  const cache = path.join(work, "warm-cache");
  polyarch(cache, path.join(work, "warm-out"));
  buildah(path.join(work, "warm-bh"));
  for (let i = 0; i < RUNS; i++) {
    warmBh.push(buildah(path.join(work, "warm-bh")));
    warm.push(polyarch(cache, path.join(work, "warm-out")));
  }
  const ratio = median(bh) / median(pa);
  console.log(
    `dockerfile benchmarks (${os.availableParallelism()} cores, node ${process.version}, ${spawnSync("buildah", ["--version"]).stdout.toString().trim()})`,
  );
  console.log(
    `native-only, 2 platforms, cold   buildah ${(median(bh) / 1000).toFixed(2)} s   polyarch ${(median(pa) / 1000).toFixed(2)} s   polyarch is ${ratio.toFixed(1)}x faster (n=${RUNS}; target ≥ 5x)  ${ratio >= 5 ? "MET" : "NOT MET"}`,
  );
  const wr = median(warmBh) / median(warm);
  console.log(
    `no-change rebuild, warm          buildah ${(median(warmBh) / 1000).toFixed(2)} s   polyarch ${(median(warm) / 1000).toFixed(2)} s   polyarch is ${wr.toFixed(1)}x faster (n=${RUNS}; target: polyarch < 1 s)  ${median(warm) < 1000 ? "MET" : "NOT MET"}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
