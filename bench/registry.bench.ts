/**
 * 1. `polyarch copy` vs `skopeo copy --all` of the six-platform maintenance proxy between two
 *    real registries (fresh destination storage for every run), median of --runs; target ≤ 1.0.
 * 2. Peak RSS of `polyarch push` of an image with a 1 GiB layer; target: flat, under 150 MB.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Digester } from "../src/digest/index.js";
import { assembleImage, assembleIndex, isoTime } from "../src/image/assemble.js";
import { MediaType } from "../src/manifest/index.js";
import { parsePlatform } from "../src/platform/index.js";
import { LayoutPublisher } from "../src/publish/index.js";
import { startRegistry } from "../src/testing/registry.js";
import { createReadStream } from "node:fs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = path.join(ROOT, "bin", "polyarch.js");
const SIX = "linux/amd64,linux/arm64,linux/arm/v7,linux/386,linux/ppc64le,linux/s390x";
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const work = mkdtempSync(path.join(os.tmpdir(), "polyarch-regbench-"));
const env = { ...process.env, POLYARCH_CACHE_DIR: path.join(work, "cache"), SOURCE_DATE_EPOCH: "0" };

function run(cmd: string, args: string[]): { ms: number; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.toString()}`);
  return { ms, stderr: r.stderr.toString() };
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  console.log(
    `registry benchmarks (${os.availableParallelism()} cores, node ${process.version}, ${spawnSync("skopeo", ["--version"]).stdout.toString().trim()})`,
  );
  const src = await startRegistry();
  try {
    run(process.execPath, [
      BIN,
      "build",
      path.join(ROOT, "examples", "maintenance-proxy"),
      "-q",
      "-p",
      SIX,
      // The image as it was measured before binaries left debug info out by default (bigger).
      ...(process.argv.includes("--stripped") ? [] : ["--debug-info"]),
      "--push",
      `${src.host}/bench/proxy:v1`,
    ]);
    const times = { polyarch: [] as number[], skopeo: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      for (const tool of ["skopeo", "polyarch"] as const) {
        const dst = await startRegistry();
        try {
          const r =
            tool === "skopeo"
              ? run("skopeo", [
                  "copy",
                  "--all",
                  "--quiet",
                  "--src-tls-verify=false",
                  "--dest-tls-verify=false",
                  `docker://${src.host}/bench/proxy:v1`,
                  `docker://${dst.host}/bench/proxy:v1`,
                ])
              : run(process.execPath, [
                  BIN,
                  "copy",
                  "-q",
                  `${src.host}/bench/proxy:v1`,
                  `${dst.host}/bench/proxy:v1`,
                ]);
          times[tool].push(r.ms);
        } finally {
          await dst.stop();
        }
      }
    }
    const p = median(times.polyarch);
    const s = median(times.skopeo);
    console.log(
      `copy six-platform image   skopeo ${(s / 1000).toFixed(3)} s   polyarch ${(p / 1000).toFixed(3)} s   ratio ${(p / s).toFixed(3)}x (n=${RUNS}; target ≤ 1.0)  ${p / s <= 1 ? "MET" : "MISSED"}`,
    );
  } finally {
    await src.stop();
  }

  if (!process.argv.includes("--copy-only")) await pushBig();
} finally {
  rmSync(work, { recursive: true, force: true });
}

async function pushBig(): Promise<void> {
  // 2. A 1 GiB layer (random bytes in an uncompressed tar), pushed from a layout.
  const big = path.join(work, "big.bin");
  const tar = path.join(work, "layer.tar");
  spawnSync("bash", [
    "-c",
    `head -c 1073741824 /dev/urandom > ${big} && tar -C ${work} -cf ${tar} big.bin && rm ${big}`,
  ]);
  const d = new Digester();
  for await (const c of createReadStream(tar, { highWaterMark: 1 << 20 })) d.update(c as Buffer);
  const digest = d.digest();
  const image = assembleImage({
    platform: parsePlatform("linux/amd64"),
    layers: [
      {
        mediaType: MediaType.OCI_LAYER,
        digest,
        size: d.size,
        diffId: digest,
        file: tar,
        createdBy: "bench: 1 GiB",
      },
    ],
    created: isoTime(0),
    entrypoint: ["/big.bin"],
    env: [],
  });
  const layout = path.join(work, "big-oci");
  await new LayoutPublisher(layout).publish(await assembleIndex([image]), ["big"]);
  rmSync(tar);
  const reg = await startRegistry();
  try {
    const r = run("/usr/bin/time", [
      "-f",
      "maxrss_kb=%M",
      process.execPath,
      BIN,
      "push",
      `oci:${layout}:big`,
      `${reg.host}/bench/big:1`,
    ]);
    const kb = Number(/maxrss_kb=(\d+)/.exec(r.stderr)?.[1]);
    console.log(
      `push 1 GiB layer          ${(r.ms / 1000).toFixed(1)} s   peak RSS ${(kb / 1024).toFixed(0)} MB (target < 150 MB)  ${kb / 1024 < 150 ? "MET" : "MISSED"}`,
    );
  } finally {
    await reg.stop();
  }
}
