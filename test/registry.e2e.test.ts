/**
 * Publishing to the real CNCF Distribution registry: what polyarch pushes skopeo reads back
 * with the same digests, what skopeo pushes polyarch copies and inspects, a rebuild uploads
 * nothing, and a proxy that drops and fails requests does not change the result.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { startProxy } from "../src/testing/proxy.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, dockerfileBuild, gitExample, polyarch, SIX, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let reg: RunningRegistry;
let cache: string;
const env = () => ({
  POLYARCH_CACHE_DIR: cache,
  POLYARCH_RETRY_DELAYS_MS: "20,50",
  DOCKER_CONFIG: path.join(work, "docker"),
});
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];
const skopeoRaw = async (ref: string) =>
  mustRun("skopeo", ["inspect", "--tls-verify=false", "--raw", `docker://${ref}`]);

before(async () => {
  work = await tempDir("reg");
  cache = path.join(work, "cache");
  src = await gitExample("maintenance-proxy", path.join(work, "src"));
  reg = await startRegistry();
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

describe("push to a registry", () => {
  let pushed: string;

  it("build --push writes an index skopeo reads with the same digest and platforms", async () => {
    const r = await polyarch(
      ["build", src, "-p", SIX.join(","), "--push", `${reg.host}/acme/proxy:v1`, "-t", "latest"],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    pushed = digestOf(r.stdout)!;
    assert.ok(pushed);
    assert.match(r.stdout, new RegExp(`^${reg.host}/acme/proxy:v1@${pushed}$`, "m"));
    assert.match(r.stdout, new RegExp(`^${reg.host}/acme/proxy:latest@${pushed}$`, "m"));
    const raw = await skopeoRaw(`${reg.host}/acme/proxy:v1`);
    const { sha256 } = await import("../src/digest/index.js");
    assert.equal(sha256(raw), pushed);
    const index = JSON.parse(raw) as { manifests: { platform: { architecture: string } }[] };
    assert.equal(index.manifests.length, 6);
    // skopeo picks one platform from our index and reads its config.
    const cfg = JSON.parse(
      await mustRun("skopeo", [
        "inspect",
        "--tls-verify=false",
        "--config",
        "--override-arch",
        "s390x",
        `docker://${reg.host}/acme/proxy:v1`,
      ]),
    ) as { architecture: string; config: { Entrypoint: string[] } };
    assert.equal(cfg.architecture, "s390x");
    assert.deepEqual(cfg.config.Entrypoint, ["/app/maintenance-proxy"]);
    assert.ok(!r.stdout.includes("oci:"), "--push alone writes no layout");
    // The six binaries' layers and the static files' layer went up while the build still ran;
    // the six configs only once every platform was built.
    assert.match(r.stderr, /13 blobs uploaded \([^,]+, 7 while building\)/);
  });

  it("a second build --push with nothing changed uploads zero blob bytes", async () => {
    const proxy = await startProxy(reg.host);
    try {
      const r = await polyarch(["build", src, "-p", SIX.join(","), "--push", `${proxy.host}/acme/proxy:v1`], {
        env: env(),
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(digestOf(r.stdout), pushed);
      assert.equal(proxy.uploadedBytes(), 0);
      assert.equal(
        proxy.log.filter((l) => l.method === "POST" || l.method === "PATCH").length,
        0,
        "no upload session started",
      );
      assert.match(
        r.stderr,
        /0 blobs uploaded \(0 B\), 13 already there, 0 mounted; 0 manifests written, 7 already there/,
      );
    } finally {
      await proxy.stop();
    }
  });

  it("a native Dockerfile build --push sends its layers while building, and skopeo reads the result", async () => {
    const ctx = path.join(work, "df");
    await mkdir(path.join(ctx, "static"), { recursive: true });
    await writeFile(path.join(ctx, "static", "index.html"), "<h1>up</h1>\n");
    await writeFile(path.join(ctx, "app"), "#!/bin/sh\necho app\n");
    await writeFile(
      path.join(ctx, "Dockerfile"),
      'FROM scratch\nCOPY static/ /srv/static/\nCOPY app /srv/app\nCMD ["/srv/app"]\n',
    );
    const r = await polyarch([...dockerfileBuild(ctx), "--push", `${reg.host}/acme/df:v1`], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    // Two COPY layers, the same for both platforms, went up during the build; two configs after.
    assert.match(r.stderr, /4 blobs uploaded \([^,]+, 2 while building\)/);
    const index = JSON.parse(await skopeoRaw(`${reg.host}/acme/df:v1`)) as { manifests: unknown[] };
    assert.equal(index.manifests.length, 2);
    assert.equal(
      digestOf(r.stdout),
      (await import("../src/digest/index.js")).sha256(await skopeoRaw(`${reg.host}/acme/df:v1`)),
    );
  });

  it("per-platform tags point at each platform's image", async () => {
    const r = await polyarch(
      [
        "build",
        src,
        "-p",
        "linux/amd64,linux/arm/v7",
        "--push",
        `${reg.host}/acme/pt:v2`,
        "--platform-tags",
        "arch",
      ],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    const tags = JSON.parse(
      await mustRun("skopeo", ["list-tags", "--tls-verify=false", `docker://${reg.host}/acme/pt`]),
    ) as { Tags: string[] };
    assert.deepEqual(tags.Tags.sort(), ["v2", "v2-amd64", "v2-arm-v7"]);
    const one = JSON.parse(await skopeoRaw(`${reg.host}/acme/pt:v2-arm-v7`)) as { mediaType: string };
    assert.equal(one.mediaType, "application/vnd.oci.image.manifest.v1+json");
  });

  it("push from a layout, copy between repositories and back to a layout keep the digest", async () => {
    const layout = path.join(work, "layout");
    const b = await polyarch(
      ["build", src, "-p", "linux/amd64,linux/arm64", "-o", `oci:${layout}`, "-t", "v3"],
      { env: env() },
    );
    assert.equal(b.code, 0, b.stderr);
    const built = digestOf(b.stdout)!;
    const p = await polyarch(["push", `oci:${layout}:v3`, `${reg.host}/acme/pushed:v3`], { env: env() });
    assert.equal(p.code, 0, p.stderr);
    assert.equal(digestOf(p.stdout), built);
    const c = await polyarch(["copy", `${reg.host}/acme/pushed:v3`, `${reg.host}/mirror/pushed:v3`], {
      env: env(),
    });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(digestOf(c.stdout), built);
    assert.match(
      c.stderr,
      /0 blobs uploaded .* [1-9]\d* mounted/,
      "same registry: blobs are mounted, not uploaded",
    );
    const back = path.join(work, "back");
    const l = await polyarch(["copy", `${reg.host}/mirror/pushed:v3`, `oci:${back}`], { env: env() });
    assert.equal(l.code, 0, l.stderr);
    assert.equal(digestOf(l.stdout), built);
    assert.equal((await mustRun("skopeo", ["inspect", "--raw", `oci:${back}:v3`])).length > 0, true);
    const again = await polyarch(["copy", `${reg.host}/acme/pushed:v3`, `${reg.host}/mirror/pushed:v3`], {
      env: env(),
    });
    assert.match(again.stderr, /is up to date/);
  });

  it("copies what skopeo pushed, and a platform subset gets a new index skopeo reads", async () => {
    const layout = path.join(work, "for-skopeo");
    const b = await polyarch(
      ["build", src, "-p", "linux/amd64,linux/arm64,linux/ppc64le", "-o", `oci:${layout}`, "-t", "s1"],
      { env: env() },
    );
    assert.equal(b.code, 0, b.stderr);
    await mustRun("skopeo", [
      "copy",
      "--all",
      "--preserve-digests",
      "--dest-tls-verify=false",
      `oci:${layout}:s1`,
      `docker://${reg.host}/bysko/proxy:s1`,
    ]);
    const skoDigest = (await import("../src/digest/index.js")).sha256(
      await skopeoRaw(`${reg.host}/bysko/proxy:s1`),
    );
    const c = await polyarch(["copy", `${reg.host}/bysko/proxy:s1`, `${reg.host}/fromsko/proxy:s1`], {
      env: env(),
    });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(digestOf(c.stdout), skoDigest);
    const i = await polyarch(["inspect", `${reg.host}/fromsko/proxy:s1`, "--json"], { env: env() });
    assert.equal((JSON.parse(i.stdout) as { manifests: unknown[] }).manifests.length, 3);
    const sub = await polyarch(
      [
        "copy",
        "-p",
        "linux/arm64,linux/ppc64le",
        `${reg.host}/bysko/proxy:s1`,
        `${reg.host}/subset/proxy:two`,
      ],
      { env: env() },
    );
    assert.equal(sub.code, 0, sub.stderr);
    assert.notEqual(digestOf(sub.stdout), skoDigest);
    const two = JSON.parse(await skopeoRaw(`${reg.host}/subset/proxy:two`)) as {
      manifests: { platform: { architecture: string } }[];
    };
    assert.deepEqual(
      two.manifests.map((m) => m.platform.architecture),
      ["arm64", "ppc64le"],
    );
  });
});

describe("faults between polyarch and the registry", () => {
  it("resets, 500s and a 429 with Retry-After on the way still give the same digests", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push(
        { method: "PUT", path: /\/blobs\/uploads\//, times: 1, kind: "reset" },
        { method: "PUT", path: /\/blobs\/uploads\//, times: 1, kind: "500" },
        { method: "PUT", path: /\/manifests\/sha256:/, times: 1, kind: "429", retryAfter: 0 },
        { method: "HEAD", path: /\/blobs\//, times: 2, kind: "reset" },
      );
      const r = await polyarch(
        ["build", src, "-p", "linux/amd64,linux/arm64", "--push", `${proxy.host}/faulty/proxy:v1`],
        { env: env() },
      );
      assert.equal(r.code, 0, r.stderr);
      const want = await polyarch(
        [
          "build",
          src,
          "-p",
          "linux/amd64,linux/arm64",
          "-o",
          `oci:${path.join(work, "ref-faulty")}`,
          "--json",
          "-q",
        ],
        { env: env() },
      );
      assert.equal(digestOf(r.stdout), (JSON.parse(want.stdout) as { digest: string }).digest);
      assert.ok(
        proxy.faults.every((f) => f.times === 0),
        "every fault was hit",
      );
      const { sha256 } = await import("../src/digest/index.js");
      assert.equal(sha256(await skopeoRaw(`${reg.host}/faulty/proxy:v1`)), digestOf(r.stdout));
    } finally {
      await proxy.stop();
    }
  });

  it("gives up after 3 attempts on a permanent 503 and moves no tag", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "PUT", path: /\/manifests\/sha256:/, times: 100, kind: "500" });
      const r = await polyarch(
        ["build", src, "-p", "linux/amd64", "--push", `${proxy.host}/stuck/proxy:v1`],
        { env: env() },
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, /after 3 attempts/);
      assert.match(r.stderr, /500/);
      assert.equal(
        proxy.log.filter((l) => l.method === "PUT" && /manifests\/sha256:/.test(l.path)).length,
        3,
      );
      assert.equal(
        proxy.log.filter((l) => l.method === "PUT" && /manifests\/v1$/.test(l.path)).length,
        0,
        "the tag never moved",
      );
    } finally {
      await proxy.stop();
    }
  });

  it("refuses a manifest whose bytes are flipped, and an oversize manifest", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "GET", path: /\/manifests\/sha256:/, times: 3, kind: "flip" });
      const r = await polyarch(
        ["copy", "-p", "linux/amd64", `${proxy.host}/acme/proxy:v1`, `oci:${path.join(work, "flip")}`],
        { env: env() },
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, /digest mismatch|not JSON|invalid/);
      proxy.faults.push({ method: "GET", path: /\/manifests\/v1$/, times: 3, kind: "oversize" });
      const o = await polyarch(["inspect", `${proxy.host}/acme/proxy:v1`], { env: env() });
      assert.equal(o.code, 1);
      assert.match(o.stderr, /exceeds 4194304 bytes/);
    } finally {
      await proxy.stop();
    }
  });
});

describe("bad registry input", () => {
  it("a malformed reference, an unknown host, a missing repository", async () => {
    const bad = await polyarch(["inspect", "Foo/Bar:x"], { env: env() });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid image reference "Foo\/Bar:x": repository name must be lowercase/);
    const host = await polyarch(["inspect", "no-such-host.invalid/acme/x:v1"], {
      env: { ...env(), POLYARCH_RETRY_DELAYS_MS: "1,1" },
    });
    assert.equal(host.code, 1);
    assert.match(host.stderr, /cannot reach no-such-host\.invalid: unknown host/);
    const repo = await polyarch(["inspect", `${reg.host}/nobody/here:v1`], { env: env() });
    assert.equal(repo.code, 1);
    assert.match(repo.stderr, /repository 127\.0\.0\.1:\d+\/nobody\/here not found/);
    const plat = await polyarch(
      ["copy", "-p", "linux/riscv64", `${reg.host}/acme/proxy:v1`, `oci:${path.join(work, "x")}`],
      { env: env() },
    );
    assert.equal(plat.code, 1);
    assert.match(plat.stderr, /has no linux\/riscv64 image\n {2}hint: It has: linux\/386, linux\/amd64/);
  });
});

describe("basic auth (htpasswd)", () => {
  let authReg: RunningRegistry;
  before(async () => {
    const dir = path.join(work, "auth");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, "htpasswd");
    await mustRun("htpasswd", ["-Bbc", file, "ci-user", "s3cret-pass"]);
    authReg = await startRegistry({ kind: "htpasswd", file });
  });
  after(() => authReg.stop());

  it("refuses anonymous and wrong credentials, naming the registry; login then push works", async () => {
    const authEnv = { ...env(), DOCKER_CONFIG: path.join(work, "docker-auth") };
    const anon = await polyarch(
      ["build", src, "-p", "linux/amd64", "--push", `${authReg.host}/team/app:v1`],
      { env: authEnv },
    );
    assert.equal(anon.code, 1);
    assert.match(anon.stderr, new RegExp(`${authReg.host.replace(/\./g, "\\.")} needs a user and password`));
    const wrong = await polyarch(["login", authReg.host, "-u", "ci-user", "--password-stdin"], {
      env: authEnv,
      input: "wrong-pass\n",
    });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused the credentials/);
    assert.doesNotMatch(wrong.stderr + wrong.stdout, /wrong-pass/, "the secret is never printed");
    const ok = await polyarch(["login", authReg.host, "-u", "ci-user", "--password-stdin"], {
      env: authEnv,
      input: "s3cret-pass\n",
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.doesNotMatch(ok.stderr + ok.stdout, /s3cret-pass/);
    const push = await polyarch(
      ["build", src, "-p", "linux/amd64", "--push", `${authReg.host}/team/app:v1`],
      { env: authEnv },
    );
    assert.equal(push.code, 0, push.stderr);
    const raw = await mustRun("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--creds",
      "ci-user:s3cret-pass",
      "--raw",
      `docker://${authReg.host}/team/app:v1`,
    ]);
    assert.equal((await import("../src/digest/index.js")).sha256(raw), digestOf(push.stdout));
  });

  it("uses credentials from a docker config.json auths entry", async () => {
    const dir = path.join(work, "docker-cfg");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({
        auths: { [authReg.host]: { auth: Buffer.from("ci-user:s3cret-pass").toString("base64") } },
      }),
    );
    const r = await polyarch(["inspect", `${authReg.host}/team/app:v1`], {
      env: { ...env(), DOCKER_CONFIG: dir },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /linux\/amd64/);
  });
});

describe("token auth (bearer)", () => {
  let tokens: import("../src/testing/tokenserver.js").TokenServer;
  let tokReg: RunningRegistry;
  before(async () => {
    const { startTokenServer } = await import("../src/testing/tokenserver.js");
    const dir = path.join(work, "token");
    await mkdir(dir, { recursive: true });
    tokens = await startTokenServer(dir, { robot: "t0ken-secret" });
    tokReg = await startRegistry({
      kind: "token",
      realm: tokens.realm,
      service: tokens.service,
      issuer: tokens.issuer,
      rootCertBundle: tokens.rootCertBundle,
    });
  });
  after(async () => {
    await tokReg.stop();
    await tokens.stop();
  });

  it("anonymous push is refused with the registry and scope named; with login it works in few token requests", async () => {
    const tokEnv = { ...env(), DOCKER_CONFIG: path.join(work, "docker-token") };
    const anon = await polyarch(["build", src, "-p", "linux/amd64", "--push", `${tokReg.host}/team/tok:v1`], {
      env: tokEnv,
    });
    assert.equal(anon.code, 1);
    assert.match(
      anon.stderr,
      new RegExp(
        `${tokReg.host.replace(/\./g, "\\.")} refused the credentials for repository:team/tok:pull,push`,
      ),
    );
    const login = await polyarch(["login", tokReg.host, "-u", "robot", "--password-stdin"], {
      env: tokEnv,
      input: "t0ken-secret",
    });
    assert.equal(login.code, 0, login.stderr);
    const before = tokens.requests.length;
    const push = await polyarch(
      ["build", src, "-p", "linux/amd64,linux/arm64", "--push", `${tokReg.host}/team/tok:v1`],
      { env: tokEnv },
    );
    assert.equal(push.code, 0, push.stderr);
    const used = tokens.requests.slice(before);
    assert.ok(used.length <= 2, `token requests: ${used.length}`);
    assert.equal(used[0]!.scopes[0], "repository:team/tok:pull,push", "the push scope comes first");
    assert.ok(used.every((r) => r.user === "robot"));
    const wrong = await polyarch(["inspect", `${tokReg.host}/team/tok:v1`], {
      env: { ...env(), DOCKER_CONFIG: path.join(work, "docker-none") },
    });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused the credentials for repository:team\/tok:pull/);
    const ok = await polyarch(["inspect", `${tokReg.host}/team/tok:v1`], { env: tokEnv });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /linux\/arm64/);
  });
});
