/** Building on a base image from a registry (or a layout): per-platform bases, mounts, errors. */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { assembleImage, assembleIndex, isoTime } from "../src/image/assemble.js";
import { writeLayer } from "../src/layer/index.js";
import { layoutArtifact } from "../src/layout/artifact.js";
import { OciLayout } from "../src/layout/index.js";
import { parsePlatform } from "../src/platform/index.js";
import { LayoutPublisher } from "../src/publish/index.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { eventually, httpGet, mustRun, runUnpacked } from "../src/testing/tools.js";
import { validateArtifact } from "../src/testing/validate.js";
import { cleanup, gitExample, polyarch, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let reg: RunningRegistry;
let baseLayout: string;
const env = () => ({
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
  POLYARCH_RETRY_DELAYS_MS: "20,50",
  DOCKER_CONFIG: path.join(work, "docker"),
});

/** A small base made here from Debian's CA bundle: one layer, two platforms, its own env and user. */
async function makeBase(dir: string): Promise<void> {
  const created = isoTime(1_600_000_000);
  const layer = await writeLayer(
    [
      {
        type: "file",
        path: "etc/ssl/certs/ca-certificates.crt",
        mode: 0o444,
        source: { file: "/etc/ssl/certs/ca-certificates.crt" },
      },
    ],
    { mtime: 1_600_000_000, uid: 0, gid: 0 },
    path.join(dir, "..", "base-layer.tgz"),
  );
  const images = ["linux/amd64", "linux/arm64"].map((p) =>
    assembleImage({
      platform: parsePlatform(p),
      layers: [{ ...layer, createdBy: "test: CA certificates" }],
      created,
      entrypoint: ["/bin/false"],
      env: ["PATH=/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
      user: "65532:65532",
      labels: { "org.example.base": "static" },
    }),
  );
  await new LayoutPublisher(dir).publish(await assembleIndex(images), ["1"]);
}

before(async () => {
  work = await tempDir("base");
  src = await gitExample("maintenance-proxy", path.join(work, "src"));
  reg = await startRegistry();
  baseLayout = path.join(work, "base-oci");
  await makeBase(baseLayout);
  const r = await polyarch(["push", `oci:${baseLayout}:1`, `${reg.host}/base/static:1`], { env: env() });
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

describe("--base", () => {
  it("builds each platform on the base's image for it and mounts the base layer instead of uploading it", async () => {
    const r = await polyarch(
      [
        "build",
        src,
        "-p",
        "linux/amd64,linux/arm64",
        "--base",
        `${reg.host}/base/static:1`,
        "--push",
        `${reg.host}/app/withbase:v1`,
      ],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /1 mounted/);
    const cfg = JSON.parse(
      await mustRun("skopeo", [
        "inspect",
        "--tls-verify=false",
        "--config",
        "--override-arch",
        "arm64",
        `docker://${reg.host}/app/withbase:v1`,
      ]),
    ) as {
      config: { Env: string[]; User: string; Entrypoint: string[]; Labels: Record<string, string> };
      rootfs: { diff_ids: string[] };
      history: { created_by: string }[];
    };
    assert.ok(cfg.config.Env.includes("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"), "base env kept");
    assert.ok(cfg.config.Env.includes("PATH=/usr/bin:/bin"), "base PATH not replaced");
    assert.equal(cfg.config.User, "65532:65532", "base user kept");
    assert.deepEqual(cfg.config.Entrypoint, ["/app/maintenance-proxy"]);
    assert.equal(cfg.config.Labels["org.example.base"], "static");
    assert.equal(cfg.rootfs.diff_ids.length, 3);
    assert.equal(cfg.history[0]!.created_by, "test: CA certificates");
  });

  it("runs on arm64 from the unpacked image, with the base's files in place", async () => {
    const dir = await tempDir("base-run");
    try {
      await mustRun("skopeo", [
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${reg.host}/app/withbase:v1`,
        `oci:${path.join(dir, "l")}:v1`,
      ]);
      await runUnpacked(
        `oci:${path.join(dir, "l")}:v1`,
        parsePlatform("linux/arm64"),
        dir,
        { extraArgs: (port) => [`-port=${port}`] },
        async (base, { rootfs }) => {
          assert.equal(
            await readFile(path.join(rootfs, "etc/ssl/certs/ca-certificates.crt"), "utf8"),
            await readFile("/etc/ssl/certs/ca-certificates.crt", "utf8"),
          );
          const res = await eventually(() => httpGet(`${base}/healthz`), 20_000);
          assert.equal(res.status, 200);
        },
      );
    } finally {
      await cleanup(dir);
    }
  });

  it("refuses a platform the base lacks, naming the ones it has, before compiling", async () => {
    const r = await polyarch(
      [
        "build",
        src,
        "-p",
        "linux/amd64,linux/arm/v7",
        "--base",
        `${reg.host}/base/static:1`,
        "--push",
        `${reg.host}/app/withbase:v2`,
      ],
      { env: env() },
    );
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /base .*base\/static:1 has no linux\/arm\/v7 image\n {2}hint: It has: linux\/amd64, linux\/arm64\./,
    );
    assert.doesNotMatch(r.stderr, /compiled/);
  });

  it("builds on a base from an OCI layout into a complete layout", async () => {
    const out = path.join(work, "out");
    const r = await polyarch(
      ["build", src, "-p", "linux/amd64", "--base", `oci:${baseLayout}:1`, "-o", `oci:${out}`],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    const layout = await OciLayout.open(out);
    await validateArtifact(await layoutArtifact(layout, await layout.resolve("latest")));
    const cfg = JSON.parse(await mustRun("skopeo", ["inspect", "--config", `oci:${out}:latest`])) as {
      config: { User: string };
    };
    assert.equal(cfg.config.User, "65532:65532");
  });

  it("--platform all builds every platform the base has, from a layout and from a registry", async () => {
    for (const base of [`oci:${baseLayout}:1`, `${reg.host}/base/static:1`]) {
      const out = path.join(work, `all-${base.startsWith("oci:") ? "oci" : "reg"}`);
      const r = await polyarch(["build", src, "--platform", "all", "--base", base, "-o", `oci:${out}`], {
        env: env(),
      });
      assert.equal(r.code, 0, r.stderr);
      const index = JSON.parse(await mustRun("skopeo", ["inspect", "--raw", `oci:${out}:latest`])) as {
        manifests: { platform: { os: string; architecture: string } }[];
      };
      assert.deepEqual(
        index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`),
        ["linux/amd64", "linux/arm64"],
      );
    }
    for (const [args, re] of [
      [
        ["--platform", "all"],
        /--platform all builds every platform of the base image, and no --base is given/,
      ],
      [
        ["--platform", "all", "-f", "Dockerfile", "--base", `oci:${baseLayout}:1`],
        /--platform all is for Go builds on a --base/,
      ],
    ] as const) {
      const b = await polyarch(["build", src, ...args, "-o", `oci:${work}/all-bad`], { env: env() });
      assert.equal(b.code, 1, b.stderr);
      assert.match(b.stderr, re);
    }
  });

  it("platforms: all in polyarch.yaml builds every platform of the image's base in polyarch run; without a base it is refused", async () => {
    const dir = await gitExample("maintenance-proxy", path.join(work, "yaml-all"));
    const yaml = (extra: string) =>
      writeFile(
        path.join(dir, "polyarch.yaml"),
        `images:\n  - name: proxy\n${extra}platforms: all\nlint: "true"\ntest: "true"\n`,
      );
    await yaml(`    base: ${reg.host}/base/static:1\n`);
    const plan = await polyarch(["run", "--dry-run", "--json"], { cwd: dir, env: env() });
    assert.equal(plan.code, 0, plan.stderr);
    assert.deepEqual(
      (JSON.parse(plan.stdout) as { images: { platforms: string[] }[] }).images[0]!.platforms,
      ["linux/amd64", "linux/arm64"],
    );
    const r = await polyarch(["run", "--stages", "build,publish"], { cwd: dir, env: env() });
    assert.equal(r.code, 0, r.stderr);
    const ref = /(oci:\S+)@sha256:/.exec(r.stdout)?.[1];
    assert.ok(ref?.startsWith(`oci:${path.join(dir, "out", "oci", "proxy")}:`), r.stdout);
    const index = JSON.parse(await mustRun("skopeo", ["inspect", "--raw", ref!])) as {
      manifests: { platform: { architecture: string } }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => m.platform.architecture),
      ["amd64", "arm64"],
    );
    await yaml("");
    const bad = await polyarch(["run", "--dry-run"], { cwd: dir, env: env() });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(
      bad.stderr,
      /platforms all \(from polyarch\.yaml\) builds every platform of an image's base, and image proxy has no base/,
    );
  });
});
