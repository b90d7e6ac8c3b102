/**
 * containerd (Debian's, started by the test on its own socket) as the consumer of what
 * polyarch writes and pushes (issue 10 §4): `ctr images import` of the tarball keeps the index
 * digest and both platforms, `ctr images pull` takes it from the registry, and `ctr run` runs
 * amd64 natively and arm64 through binfmt.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningContainerd, startContainerd } from "../src/testing/containerd.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { cleanup, dockerfileBuild, polyarch, tempDir, unameContext } from "./_fixture.js";

let work: string;
let ctd: RunningContainerd;
let reg: RunningRegistry;

before(async () => {
  work = await tempDir("containerd");
  [ctd, reg] = await Promise.all([startContainerd(), startRegistry()]);
});
after(async () => {
  await Promise.allSettled([ctd?.stop(), reg?.stop()]);
  await cleanup(work);
});

describe("containerd as the consumer", () => {
  it("imports polyarch's tarball and pulls its push: the same index digest, and ctr runs amd64 and arm64", async () => {
    // ctr names the imported image after the context directory: ctx.
    const ctx = path.join(work, "ctx");
    await unameContext(ctx);
    const image = `${reg.host}/ctd/uname:1`;
    const tarball = path.join(work, "uname.tar");
    const r = await polyarch([...dockerfileBuild(ctx), "--push", image, "-o", `tarball:${tarball}`], {
      env: { POLYARCH_CACHE_DIR: path.join(work, "cache") },
    });
    assert.equal(r.code, 0, r.stderr);
    const digest = /@(sha256:[a-f0-9]{64})/.exec(r.stdout)?.[1];
    assert.ok(digest, r.stdout);
    const imported = await ctd.ctr(["images", "import", "--all-platforms", tarball]);
    assert.match(imported, /unpacking/);
    // The tarball names its image (repository ctx, the tag given); ctr keeps polyarch's index as it is.
    const list = await ctd.ctr(["images", "ls"]);
    const row = list.split("\n").find((l) => l.startsWith("ctx:1 "));
    assert.ok(row?.includes(digest), list);
    assert.match(row!, /linux\/amd64,linux\/arm64/);
    await ctd.ctr(["images", "pull", "--plain-http", "--all-platforms", image]);
    assert.ok(
      (await ctd.ctr(["images", "ls"]))
        .split("\n")
        .some((l) => l.startsWith(`${image} `) && l.includes(digest)),
    );
    for (const [ref, n] of [
      ["ctx:1", 0],
      [image, 1],
    ] as const)
      for (const [platform, cpu] of [
        ["linux/amd64", "x86_64"],
        ["linux/arm64", "aarch64"],
      ] as const) {
        const out = await ctd.ctr([
          "run",
          "--rm",
          "--platform",
          platform,
          ref,
          `t-${n}-${platform.split("/")[1]}`,
        ]);
        assert.equal(out.trim(), cpu, `${ref} ${platform}`);
      }
  });
});
