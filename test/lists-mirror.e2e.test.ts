/** Manifest lists by hand (seeds 000/001) and mirroring a thirdparty.txt (seed 002), on the real registry. */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { sha256 } from "../src/digest/index.js";
import { startProxy } from "../src/testing/proxy.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, gitExample, polyarch, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let reg: RunningRegistry;
const env = () => ({
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
  POLYARCH_RETRY_DELAYS_MS: "20,50",
  DOCKER_CONFIG: path.join(work, "docker"),
});
const raw = (ref: string) => mustRun("skopeo", ["inspect", "--tls-verify=false", "--raw", `docker://${ref}`]);
const ok = async (args: string[]) => {
  const r = await polyarch(args, { env: env() });
  assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return r;
};

before(async () => {
  work = await tempDir("lists");
  src = await gitExample("hello", path.join(work, "src"));
  reg = await startRegistry();
  await ok([
    "build",
    src,
    "-p",
    "linux/amd64,linux/arm64,linux/arm/v7",
    "--push",
    `${reg.host}/build/hello:v1`,
  ]);
  // One image per platform and tag, as seed 001's script pushes them.
  for (const [p, t] of [
    ["linux/amd64", "v1-linux-amd64"],
    ["linux/arm64", "v1-linux-arm64"],
  ] as const) {
    await ok(["copy", "-p", p, `${reg.host}/build/hello:v1`, `${reg.host}/my-app/app:${t}`]);
  }
  await ok(["copy", "-p", "linux/arm/v7", `${reg.host}/build/hello:v1`, `${reg.host}/elsewhere/app:v1-arm`]);
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

describe("manifest create / annotate / push", () => {
  it("joins per-platform images into one list with platforms from their configs", async () => {
    const list = `${reg.host}/my-app/app:v1`;
    const c = await ok([
      "manifest",
      "create",
      list,
      `${reg.host}/my-app/app:v1-linux-amd64`,
      `${reg.host}/my-app/app:v1-linux-arm64`,
    ]);
    assert.match(c.stdout, /Created manifest list/);
    const again = await polyarch(["manifest", "create", list, `${reg.host}/my-app/app:v1-linux-amd64`], {
      env: env(),
    });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists\n {2}hint: Add --amend/);
    await ok(["manifest", "create", "--amend", list, `${reg.host}/elsewhere/app:v1-arm`]);
    const inspect = JSON.parse((await ok(["manifest", "inspect", list])).stdout) as {
      manifests: { platform: { architecture: string; variant?: string } }[];
    };
    assert.deepEqual(
      inspect.manifests.map((m) => [m.platform.architecture, m.platform.variant ?? ""]),
      [
        ["amd64", ""],
        ["arm64", ""],
        ["arm", "v7"],
      ],
    );
    await ok(["manifest", "annotate", list, `${reg.host}/elsewhere/app:v1-arm`, "--variant", "v6"]);
    const bad = await polyarch(
      ["manifest", "annotate", list, `${reg.host}/elsewhere/app:v1-arm`, "--arch", "sparc"],
      { env: env() },
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown architecture "sparc"/);
    const p = await ok(["manifest", "push", "--purge", list]);
    const digest = p.stdout.trim();
    const pushed = await raw(list);
    assert.equal(sha256(pushed), digest);
    const idx = JSON.parse(pushed) as {
      mediaType: string;
      manifests: { digest: string; platform: { architecture: string; variant?: string } }[];
    };
    assert.equal(idx.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.deepEqual(
      idx.manifests.map((m) => m.platform.variant ?? m.platform.architecture),
      ["amd64", "arm64", "v6"],
    );
    // The arm image came from another repository: it was copied into my-app/app first.
    const armDigest = idx.manifests[2]!.digest;
    assert.ok((await raw(`${reg.host}/my-app/app@${armDigest}`)).length > 0);
    const gone = await polyarch(["manifest", "inspect", list], { env: env() });
    assert.equal(gone.code, 1, "--purge removed the local list");
  });

  it("takes all platforms of an index, and refuses two images for one platform", async () => {
    const list = `${reg.host}/my-app/app:dup`;
    await ok([
      "manifest",
      "create",
      list,
      `${reg.host}/build/hello:v1`,
      `${reg.host}/my-app/app:v1-linux-amd64`,
    ]);
    const shown = JSON.parse((await ok(["manifest", "inspect", list])).stdout) as {
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    assert.equal(shown.manifests.length, 3, "the index's three images; the amd64 one is not added twice");
    const amd64 = shown.manifests.find((m) => m.platform.architecture === "amd64")!.digest;
    await ok(["manifest", "annotate", list, amd64, "--arch", "arm64"]);
    const dup = await polyarch(["manifest", "push", list], { env: env() });
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /two different images for linux\/arm64/);
  });
});

describe("mirror -f thirdparty.txt", () => {
  it("copies new images, then says up to date, then copies only what changed", async () => {
    const proxy = await startProxy(reg.host);
    try {
      const list = path.join(work, "thirdparty.txt");
      await writeFile(
        list,
        `# vendored base images\n${proxy.host}/build/hello:v1   ${proxy.host}/vendor/hello:v1\n${proxy.host}/my-app/app:v1\n\n`,
      );
      const first = await ok(["mirror", "-f", list, "--to", `${proxy.host}/vendor`]);
      assert.match(first.stderr, /vendor\/hello:v1: copied/);
      assert.match(first.stderr, /vendor\/my-app\/app:v1: copied/);
      assert.equal(
        sha256(await raw(`${reg.host}/vendor/hello:v1`)),
        sha256(await raw(`${reg.host}/build/hello:v1`)),
      );
      const uploadsBefore = proxy.uploadedBytes();
      const second = await ok(["mirror", "-f", list, "--to", `${proxy.host}/vendor`]);
      assert.equal((second.stderr.match(/up to date/g) ?? []).length, 2);
      assert.equal(proxy.uploadedBytes(), uploadsBefore);
      await ok(["copy", `${reg.host}/build/hello:v1`, `${reg.host}/my-app/app:v1`]);
      const third = await ok(["mirror", "-f", list, "--to", `${proxy.host}/vendor`]);
      assert.match(third.stderr, /vendor\/hello:v1: up to date/);
      assert.match(third.stderr, /vendor\/my-app\/app:v1: copied/);
    } finally {
      await proxy.stop();
    }
  });

  it("takes the list from polyarch.yaml's mirror section when no -f is given", async () => {
    const dir = path.join(work, "cfg");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "polyarch.yaml"),
      `images:\n  - name: x\nmirror:\n  to: ${reg.host}/fromcfg\n  images:\n    - ${reg.host}/build/hello:v1\n`,
    );
    const r = await polyarch(["mirror"], { cwd: dir, env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /fromcfg\/build\/hello:v1: copied/);
  });

  it("names the file and line of a bad entry", async () => {
    const list = path.join(work, "bad.txt");
    await writeFile(list, `${reg.host}/build/hello:v1 ${reg.host}/x:v1\nNot/Valid\n`);
    const r = await polyarch(["mirror", "-f", list], { env: env() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.txt:2: invalid image reference "Not\/Valid"/);
  });
});
