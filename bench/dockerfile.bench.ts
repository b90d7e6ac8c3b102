/**
 * Dockerfile builds against the real builder alone, same machine, one run (issue 9):
 * 1. seed 001's native-only Dockerfile (FROM scratch; COPY static/; COPY app; CMD) with the
 *    maintenance proxy's real Go binary and a small static site, for linux/amd64 and
 *    linux/arm64 into an OCI layout: buildah bud (chroot, --layers, one platform per run, as
 *    it must) vs polyarch build -f, each with a cold cache every run; target ≥ 5×;
 * 2. the same with nothing changed and warm caches: polyarch's rebuild time; target < 1 s.
 * 3. the multi-stage Go pattern (a `FROM --platform=$BUILDPLATFORM` golang stage that
 *    cross-compiles examples/hello, then a final stage with `RUN mkdir && chown`, which buildah
 *    must emulate for arm64, and `COPY --from`), two platforms, both sides cold (their build
 *    caches and storage empty); target ≥ 1.5×; then polyarch's no-change rebuild, target < 1 s;
 * 2b. memory: peak RSS over a 32 MiB and a 512 MiB context (one big file, 1000 / 16000 small ones);
 * 4. a fully delegated Dockerfile (one stage, a RUN, both platforms, arm64 emulated on both
 *    sides): polyarch handing the stage to buildah vs buildah alone; target within 1.1×.
 * Medians of --runs (default 5; rows 3 and 4: --go-runs, default 1), sides alternating;
 * --skip-native leaves rows 1 and 2 out, --skip-go rows 3 and 4.
 * The bases (busybox per architecture; busybox plus this machine's Go toolchain) are made
 * offline by buildah before anything is timed.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  openSync,
  writeSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = path.join(ROOT, "bin", "polyarch.js");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const goRunsArg = process.argv.indexOf("--go-runs");
const GO_RUNS = goRunsArg > 0 ? Number(process.argv[goRunsArg + 1]) : 1;
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
  // One storage per platform: buildah 1.28 loses an oci: base pulled for a second platform
  // into the same storage ("image not known").
  const buildahBoth = (ctxDir: string, dir: string) => {
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
          path.join(ctxDir, "Dockerfile"),
          "-t",
          `oci:${dir}/out-${p.replace("/", "-")}:latest`,
          ctxDir,
        ],
        storage(path.join(dir, p.replace("/", "-"))),
      );
    return ms;
  };
  const polyarchBoth = (ctxDir: string, cache: string, out: string) =>
    run(
      process.execPath,
      [
        BIN,
        "build",
        "-q",
        "-f",
        path.join(ctxDir, "Dockerfile"),
        ctxDir,
        "-p",
        "linux/amd64,linux/arm64",
        "-o",
        `oci:${out}`,
      ],
      { ...process.env, POLYARCH_CACHE_DIR: cache, SOURCE_DATE_EPOCH: "0" },
    );
  const buildah = (dir: string) => buildahBoth(ctx, dir);
  const polyarch = (cache: string, out: string) => polyarchBoth(ctx, cache, out);
  console.log(
    `dockerfile benchmarks (${os.availableParallelism()} cores, node ${process.version}, ${spawnSync("buildah", ["--version"]).stdout.toString().trim()})`,
  );
  if (!process.argv.includes("--skip-native")) {
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
      `native-only, 2 platforms, cold   buildah ${(median(bh) / 1000).toFixed(2)} s   polyarch ${(median(pa) / 1000).toFixed(2)} s   polyarch is ${ratio.toFixed(1)}x faster (n=${RUNS}; target ≥ 5x)  ${ratio >= 5 ? "MET" : "NOT MET"}`,
    );
    const wr = median(warmBh) / median(warm);
    console.log(
      `no-change rebuild, warm          buildah ${(median(warmBh) / 1000).toFixed(2)} s   polyarch ${(median(warm) / 1000).toFixed(2)} s   polyarch is ${wr.toFixed(1)}x faster (n=${RUNS}; target: polyarch < 1 s)  ${median(warm) < 1000 ? "MET" : "NOT MET"}`,
    );
    // Memory: the same Dockerfile over a context 16x larger (one big file, many small ones);
    // polyarch's peak RSS should not grow with it (contents stream; only metadata is held).
    const peak = (size: number, files: number) => {
      const dir = path.join(work, `mem-${size}`);
      mkdirSync(path.join(dir, "many"), { recursive: true });
      const block = Buffer.alloc(1 << 20);
      for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
      const fd = openSync(path.join(dir, "big"), "w");
      for (let i = 0; i < size; i++) {
        block.writeUInt32LE(i, 0);
        writeSync(fd, block);
      }
      closeSync(fd);
      for (let i = 0; i < files; i++) writeFileSync(path.join(dir, "many", `f${i}`), `file ${i}\n`);
      writeFileSync(
        path.join(dir, "Dockerfile"),
        "FROM scratch\nCOPY big /data/big\nCOPY many/ /data/many/\n",
      );
      const r = spawnSync(
        "/usr/bin/time",
        [
          "-f",
          "%M",
          process.execPath,
          BIN,
          "build",
          "-q",
          "-f",
          path.join(dir, "Dockerfile"),
          dir,
          "-p",
          "linux/amd64,linux/arm64",
          "-o",
          `oci:${dir}/out`,
        ],
        { env: { ...process.env, POLYARCH_CACHE_DIR: path.join(dir, "cache"), SOURCE_DATE_EPOCH: "0" } },
      );
      if (r.status !== 0) throw new Error(r.stderr.toString());
      rmSync(dir, { recursive: true, force: true });
      return Number(r.stderr.toString().trim().split("\n").at(-1)) / 1024;
    };
    const small = peak(32, 1000);
    const large = peak(512, 16000);
    console.log(
      `memory, context 32 MiB → 512 MiB  polyarch peak RSS ${small.toFixed(0)} MiB → ${large.toFixed(0)} MiB (${(large / small).toFixed(2)}x; target: flat, ≤ 1.5x)  ${large / small <= 1.5 ? "MET" : "NOT MET"}`,
    );
  }
  // ---- rows 3 and 4: bases made offline, then the Go pattern and a fully delegated build ----
  // A labelled block, so --skip-go leaves the rest of the try (and the finally still cleans up).
  rows34: {
    if (process.argv.includes("--skip-go")) break rows34;
    const bases = path.join(work, "bases");
    const bbEnv = storage(path.join(work, "bases-storage"));
    const ARM_BB = "/var/cache/polyarch-test/busybox-arm64/bin/busybox";
    const baseOf = (name: string, platform: string, fill: (root: string) => void) => {
      const ctxDir = path.join(bases, `${name}-ctx`);
      const root = path.join(ctxDir, "rootfs");
      mkdirSync(path.join(root, "bin"), { recursive: true });
      mkdirSync(path.join(root, "etc"), { recursive: true });
      mkdirSync(path.join(root, "tmp"), { recursive: true });
      chmodSync(path.join(root, "tmp"), 0o1777);
      writeFileSync(
        path.join(root, "etc", "passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
      );
      writeFileSync(path.join(root, "etc", "group"), "root:x:0:\napp:x:1000:\n");
      fill(root);
      writeFileSync(path.join(ctxDir, "Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n");
      const out = path.join(bases, name);
      run(
        "buildah",
        [
          "bud",
          "--isolation",
          "chroot",
          "--timestamp",
          "0",
          "--platform",
          platform,
          "-f",
          path.join(ctxDir, "Dockerfile"),
          "-t",
          `oci:${out}:latest`,
          ctxDir,
        ],
        bbEnv,
      );
      rmSync(ctxDir, { recursive: true, force: true });
      return out;
    };
    const busybox = (bb: string) => (root: string) => {
      copyFileSync(bb, path.join(root, "bin", "busybox"));
      chmodSync(path.join(root, "bin", "busybox"), 0o755);
      for (const c of ["sh", "mkdir", "chown", "echo", "uname", "cat"])
        symlinkSync("busybox", path.join(root, "bin", c));
    };
    baseOf("small-amd64", "linux/amd64", busybox("/bin/busybox"));
    baseOf("small-arm64", "linux/arm64", busybox(ARM_BB));
    const goroot = spawnSync("go", ["env", "GOROOT"]).stdout.toString().trim();
    const golang = baseOf("golang", "linux/amd64", (root) => {
      busybox("/bin/busybox")(root);
      mkdirSync(path.join(root, "usr", "local", "go"), { recursive: true });
      for (const part of ["bin", "pkg", "src", "lib", "go.env", "VERSION"])
        cpSync(path.join(goroot, part), path.join(root, "usr", "local", "go", part), { recursive: true });
    });
    const goCtx = path.join(work, "goctx");
    cpSync(path.join(ROOT, "examples", "hello"), goCtx, { recursive: true });
    writeFileSync(
      path.join(goCtx, "Dockerfile"),
      [
        "ARG TARGETARCH",
        `FROM --platform=$BUILDPLATFORM oci:${golang}:latest AS build`,
        "ARG TARGETOS",
        "ARG TARGETARCH",
        "WORKDIR /src",
        "COPY . .",
        "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOCACHE=/tmp/gocache GOFLAGS=-trimpath /usr/local/go/bin/go build -o /out/hello .",
        `FROM oci:${bases}/small-\${TARGETARCH}:latest`,
        "RUN mkdir -p /app && chown app:app /app",
        "COPY --from=build /out/hello /app/hello",
        "USER app",
        'ENTRYPOINT ["/app/hello"]',
      ].join("\n"),
    );
    // buildah 1.28 does not expand $BUILDPLATFORM in FROM --platform: its copy names the build
    // machine's platform, which is what the variable means. After a stage with --platform it also
    // loses the next stage's base pulled for another platform ("image not known") unless that
    // FROM names its platform too: --platform=$TARGETPLATFORM, which is what a FROM without it
    // means. polyarch gets the Dockerfile as written.
    const bhGoCtx = path.join(work, "goctx-buildah");
    cpSync(goCtx, bhGoCtx, { recursive: true });
    writeFileSync(
      path.join(bhGoCtx, "Dockerfile"),
      readFileSync(path.join(goCtx, "Dockerfile"), "utf8")
        .replace("$BUILDPLATFORM", `linux/${process.arch === "x64" ? "amd64" : process.arch}`)
        .replace(`FROM oci:${bases}/small-`, `FROM --platform=$TARGETPLATFORM oci:${bases}/small-`),
    );
    const delCtx = path.join(work, "delctx");
    mkdirSync(delCtx);
    writeFileSync(
      path.join(delCtx, "Dockerfile"),
      `ARG TARGETARCH\nFROM oci:${bases}/small-\${TARGETARCH}:latest\nARG TARGETARCH\nRUN mkdir -p /data && echo "built for $TARGETARCH on $(uname -m)" > /data/built && cat /data/built\n`,
    );
    const goBh: number[] = [];
    const goPa: number[] = [];
    const delBh: number[] = [];
    const delPa: number[] = [];
    // A side that fails is reported with its error's first line instead of a time.
    const failed = new Map<number[], string>();
    const timed = (into: number[], f: () => number) => {
      try {
        into.push(f());
      } catch (e) {
        failed.set(
          into,
          (e as Error).message.split("\n").find((l) => l.startsWith("Error:")) ??
            (e as Error).message.split("\n")[0]!,
        );
      }
    };
    for (let i = 0; i < GO_RUNS; i++) {
      const d = path.join(work, `g${i}`);
      timed(goPa, () => polyarchBoth(goCtx, path.join(d, "cache"), path.join(d, "pa")));
      timed(goBh, () => buildahBoth(bhGoCtx, path.join(d, "bh")));
      timed(delPa, () => polyarchBoth(delCtx, path.join(d, "dcache"), path.join(d, "dpa")));
      timed(delBh, () => buildahBoth(delCtx, path.join(d, "dbh")));
      if (i < GO_RUNS - 1) rmSync(d, { recursive: true, force: true });
    }
    // The rebuild: the last run's cache, nothing changed.
    const last = path.join(work, `g${GO_RUNS - 1}`);
    const goWarm: number[] = [];
    for (let i = 0; i < Math.max(3, GO_RUNS); i++)
      timed(goWarm, () => polyarchBoth(goCtx, path.join(last, "cache"), path.join(last, "pa")));
    const secs = (xs: number[]) =>
      failed.has(xs) ? `failed (${failed.get(xs)})` : `${(median(xs) / 1000).toFixed(2)} s`;
    const gr = median(goBh) / median(goPa);
    console.log(
      `go pattern, 2 platforms, cold     buildah ${secs(goBh)}   polyarch ${secs(goPa)}   ${failed.size ? "" : `polyarch is ${gr.toFixed(2)}x faster `}(n=${GO_RUNS}; target ≥ 1.5x)  ${gr >= 1.5 ? "MET" : "NOT MET"}`,
    );
    console.log(
      `go pattern, no-change rebuild     polyarch ${secs(goWarm)} (n=${goWarm.length}; target < 1 s)  ${median(goWarm) < 1000 ? "MET" : "NOT MET"}`,
    );
    const dr = median(delPa) / median(delBh);
    console.log(
      `fully delegated, 2 platforms      buildah ${secs(delBh)}   polyarch ${secs(delPa)}   ${Number.isFinite(dr) ? `polyarch takes ${dr.toFixed(2)}x buildah's time ` : ""}(n=${GO_RUNS}; target ≤ 1.1x)  ${dr <= 1.1 ? "MET" : "NOT MET"}`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
