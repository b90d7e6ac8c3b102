/**
 * polyarch and ko side by side (issue 10 "How we will know"): the same workloads (the
 * examples maintenance-proxy and hello, and notes on third-party modules), the same base (a
 * six-platform static base pushed first), six platforms, build + push to a local registry
 * (CNCF Distribution on loopback), one run:
 *
 *   cold:     empty GOCACHE (and an empty polyarch cache) on both sides
 *   warm:     a new checkout of each workload, GOCACHE and polyarch's cache warm
 *   edit:     one line of each workload's main.go changed, then built again
 *
 * Each row is the sum over the three workloads, sides alternating; the bare parallel `go build`s
 * of the same six platforms with polyarch's flags (no image, no push; CGO_ENABLED=0 -trimpath
 * -gcflags=all=-dwarf=false -ldflags='-s -w', into a new directory) run alongside as the floor
 * (target: polyarch's warm row within 1.10× of them). polyarch leaves debug info out by default
 * and ko keeps it, so ko also runs with the same flags (a .ko.yaml with those ldflags and
 * flags: "ko -s -w"), to show how much of the difference is those flags; the targets are
 * against ko as it comes. ko runs as installed by
 * `go install github.com/google/ko@v0.18.1` (into /usr/local/lib/polyarch-tools/bin, or set
 * KO=/path), with --bare and --sbom=none (polyarch makes no SBOM, so ko's is left out of the
 * work compared). Targets: polyarch ≤ 0.8× ko's wall time in every row; images no larger
 * than ko's (compressed bytes of all platforms).
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startRegistry } from "../src/testing/registry.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = path.join(ROOT, "bin", "polyarch.js");
const KO = process.env["KO"] ?? "/usr/local/lib/polyarch-tools/bin/ko";
const SIX = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386", "linux/ppc64le", "linux/s390x"];
const WORKLOADS = ["maintenance-proxy", "hello", "notes"];
if (!existsSync(KO)) {
  console.error(
    `ko is not at ${KO}: GOBIN=/usr/local/lib/polyarch-tools/bin go install github.com/google/ko@v0.18.1`,
  );
  process.exit(2);
}
const work = path.join(os.tmpdir(), `polyarch-kobench-${process.pid}`);
mkdirSync(work, { recursive: true });
const reg = await startRegistry();

/**
 * Runs a command without blocking the event loop: the registry is this process's child, and
 * its output must keep being read while a build pushes to it.
 */
function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<{ ms: number; out: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve({ ms: performance.now() - t0, out });
      else reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.slice(-2000)}`));
    });
  });
}

/** Compressed bytes of every platform's image (config and layers) of a pushed index. */
async function imageBytes(ref: string): Promise<number> {
  const raw = JSON.parse(
    (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`], process.env)).out,
  ) as {
    manifests: { digest: string }[];
  };
  const repo = ref.replace(/[:@][^/]*$/, "");
  let total = 0;
  for (const m of raw.manifests) {
    const mf = JSON.parse(
      (
        await run(
          "skopeo",
          ["inspect", "--raw", "--tls-verify=false", `docker://${repo}@${m.digest}`],
          process.env,
        )
      ).out,
    ) as {
      config: { size: number };
      layers: { size: number }[];
    };
    total += mf.config.size + mf.layers.reduce((n, l) => n + l.size, 0);
  }
  return total;
}

try {
  const env = { ...process.env, GOPROXY: "off", GOFLAGS: "-mod=mod", SOURCE_DATE_EPOCH: "0" };
  // The base both sides build on: /etc/ssl/certs from this machine, six platforms.
  const baseCtx = path.join(work, "base");
  mkdirSync(path.join(baseCtx, "etc", "ssl", "certs"), { recursive: true });
  cpSync(
    "/etc/ssl/certs/ca-certificates.crt",
    path.join(baseCtx, "etc", "ssl", "certs", "ca-certificates.crt"),
  );
  writeFileSync(path.join(baseCtx, "Dockerfile"), "FROM scratch\nCOPY etc/ /etc/\n");
  const base = `${reg.host}/base/static:1`;
  await run(
    process.execPath,
    [
      BIN,
      "build",
      "-q",
      "-f",
      path.join(baseCtx, "Dockerfile"),
      baseCtx,
      "-p",
      SIX.join(","),
      "--push",
      base,
    ],
    {
      ...env,
      POLYARCH_CACHE_DIR: path.join(work, "base-cache"),
    },
  );
  const checkout = (name: string, tag: string) => {
    const dir = path.join(work, "src", tag, name);
    cpSync(path.join(ROOT, "examples", name), dir, { recursive: true });
    return dir;
  };
  const ko = (dir: string, repo: string, gocache: string) =>
    run(
      KO,
      ["build", "./", "--bare", "--sbom=none", `--platform=${SIX.join(",")}`],
      { ...env, GOCACHE: gocache, KO_DOCKER_REPO: repo, KO_DEFAULTBASEIMAGE: base },
      dir,
    ).then((r) => r.ms);
  const side = {
    polyarch: async (dir: string, name: string, gocache: string) =>
      (
        await run(
          process.execPath,
          [
            BIN,
            "build",
            dir,
            "-q",
            "-p",
            SIX.join(","),
            "--base",
            base,
            "--push",
            `${reg.host}/pa/${name}:latest`,
          ],
          { ...env, GOCACHE: gocache, POLYARCH_CACHE_DIR: path.join(work, "pa-cache") },
        )
      ).ms,
    ko: (dir: string, name: string, gocache: string) => ko(dir, `${reg.host}/ko/${name}`, gocache),
    kostrip: (dir: string, name: string, gocache: string) => {
      writeFileSync(
        path.join(dir, ".ko.yaml"),
        [
          "builds:",
          "  - id: app",
          "    main: .",
          "    flags: [-gcflags=all=-dwarf=false]",
          "    ldflags: [-s, -w]",
          "",
        ].join("\n"),
      );
      return ko(dir, `${reg.host}/kostrip/${name}`, gocache);
    },
  };
  const bare = async (dir: string, name: string, gocache: string) => {
    const t0 = performance.now();
    await Promise.all(
      SIX.map((p) => {
        const [os, arch, variant] = p.split("/") as [string, string, string?];
        return run(
          "go",
          [
            "build",
            "-trimpath",
            "-gcflags=all=-dwarf=false",
            "-ldflags=-s -w",
            "-o",
            path.join(work, "bare", name, p.replaceAll("/", "-"), "") + path.sep,
            ".",
          ],
          {
            ...env,
            GOCACHE: gocache,
            GOOS: os,
            GOARCH: arch,
            CGO_ENABLED: "0",
            ...(variant ? { GOARM: variant.slice(1) } : {}),
          },
          dir,
        );
      }),
    );
    rmSync(path.join(work, "bare", name), { recursive: true, force: true });
    return performance.now() - t0;
  };
  const sides = { ...side, go: bare };
  const rows: [string, Record<"polyarch" | "ko" | "kostrip" | "go", number>][] = [];
  const round = async (label: string, tag: string, edit = false) => {
    const t = { polyarch: 0, ko: 0, kostrip: 0, go: 0 };
    for (const name of WORKLOADS)
      for (const s of ["ko", "polyarch", "go", "kostrip"] as const) {
        const dir = checkout(name, `${tag}-${s}`);
        if (edit) {
          const main = path.join(dir, "main.go");
          writeFileSync(
            main,
            readFileSync(main, "utf8").replace(/^package main$/m, "package main\n\n// edited"),
          );
          writeFileSync(main, readFileSync(main, "utf8").replace(/log\.Printf\("/, 'log.Printf("edited: '));
        }
        t[s] += await sides[s](dir, name, path.join(work, `gocache-${s}`));
      }
    rows.push([label, t]);
  };
  await round("cold (empty GOCACHE and caches)", "cold");
  await round("warm (new checkout, caches warm)", "warm");
  await round("one-line edit", "edit", true);
  const size = { polyarch: 0, ko: 0, kostrip: 0 };
  for (const name of WORKLOADS) {
    size.polyarch += await imageBytes(`${reg.host}/pa/${name}:latest`);
    size.ko += await imageBytes(`${reg.host}/ko/${name}:latest`);
    size.kostrip += await imageBytes(`${reg.host}/kostrip/${name}:latest`);
  }
  console.log(
    `polyarch vs ko ${spawnSync(KO, ["version"]).stdout.toString().trim()} (${os.availableParallelism()} cores, ${WORKLOADS.join(", ")}; six platforms; build + push)`,
  );
  for (const [label, t] of rows) {
    const r = t.polyarch / t.ko;
    const g = t.polyarch / t.go;
    const warm = label.startsWith("warm");
    console.log(
      `${label.padEnd(36)} ko ${(t.ko / 1000).toFixed(1)} s   polyarch ${(t.polyarch / 1000).toFixed(1)} s   ${r.toFixed(2)}x ko's time (target ≤ 0.8x)  ${r <= 0.8 ? "MET" : "NOT MET"}   bare go builds ${(t.go / 1000).toFixed(1)} s: ${g.toFixed(2)}x${warm ? ` (target ≤ 1.10x) ${g <= 1.1 ? "MET" : "NOT MET"}` : ""}   ko -s -w ${(t.kostrip / 1000).toFixed(1)} s: polyarch ${(t.polyarch / t.kostrip).toFixed(2)}x`,
    );
  }
  console.log(
    `${"image bytes, all platforms".padEnd(36)} ko ${(size.ko / 1e6).toFixed(1)} MB   polyarch ${(size.polyarch / 1e6).toFixed(1)} MB   ${size.polyarch <= size.ko ? "MET (no larger)" : "NOT MET (larger)"}   ko -s -w ${(size.kostrip / 1e6).toFixed(1)} MB`,
  );
} finally {
  await reg.stop();
  rmSync(work, { recursive: true, force: true });
}
