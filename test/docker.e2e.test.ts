/**
 * The real Docker engine (Debian's docker.io, started by the test on a unix socket) on both
 * sides of a Dockerfile build (issue 9 §4 and "How we will know"):
 * - as a builder: a stage that needs a process goes to the engine per platform (arm64 under
 *   the engine's binfmt emulation), its result comes back through `docker save`;
 * - as a consumer: what polyarch pushes is pulled by `docker pull --platform` for amd64 and
 *   arm64 and run with `docker run`, and the seeds' shapes answer.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningDocker, startDocker } from "../src/testing/docker.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { eventually, freePort, httpGet } from "../src/testing/tools.js";
import {
  ARM_BUSYBOX,
  cleanup,
  dockerfileBuild,
  gitExample,
  gitRepo,
  helloPerArch,
  polyarch,
  SIX,
  unameContext,
} from "./_fixture.js";

let work: string;
let engine: RunningDocker;
let reg: RunningRegistry;
let base: string; // a linux/amd64 + linux/arm64 busybox base in the registry, built by polyarch
const env = () => ({
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
  SOURCE_DATE_EPOCH: "1700000000",
  // The engine's own CLI first: the machine may carry another docker client on PATH.
  PATH: `${path.join(work, "bin")}:${process.env["PATH"]}`,
});

/** polyarch builds ctx's Dockerfile for amd64 and arm64, stages that need a process on the engine, and pushes. */
function onEngine(ctx: string, image: string, extra: string[] = []) {
  const endpoint = `docker+${engine.host}?network=host`;
  return polyarch(
    [
      ...dockerfileBuild(ctx),
      "--builder",
      `linux/amd64=${endpoint}`,
      "--builder",
      `linux/arm64=${endpoint}`,
      "--push",
      image,
      ...extra,
    ],
    { env: env() },
  );
}

before(async () => {
  work = await import("node:fs/promises").then((f) => f.mkdtemp(path.join(os.tmpdir(), "polyarch-docker-")));
  await import("node:fs/promises")
    .then((f) => f.stat(ARM_BUSYBOX))
    .catch(() => {
      throw new Error(
        `${ARM_BUSYBOX} is missing: run bash .ci/setup, which fetches it from the machine's Debian mirror`,
      );
    });
  [engine, reg] = await Promise.all([startDocker(), startRegistry()]);
  await mkdir(path.join(work, "bin"));
  await symlink(engine.cli, path.join(work, "bin", "docker"));
  // The base: busybox per architecture, assembled natively by polyarch and pushed.
  const ctx = path.join(work, "base");
  for (const [arch, bb] of [
    ["amd64", "/bin/busybox"],
    ["arm64", ARM_BUSYBOX],
  ] as const) {
    const root = path.join(ctx, `rootfs-${arch}`);
    await mkdir(path.join(root, "bin"), { recursive: true });
    await mkdir(path.join(root, "etc"), { recursive: true });
    await copyFile(bb, path.join(root, "bin", "busybox"));
    for (const c of ["sh", "cat", "uname", "mkdir", "echo"])
      await symlink("busybox", path.join(root, "bin", c));
    await writeFile(
      path.join(root, "etc", "passwd"),
      "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
    );
    await writeFile(path.join(root, "etc", "group"), "root:x:0:\napp:x:1000:\n");
  }
  await writeFile(
    path.join(ctx, "Dockerfile"),
    "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\n",
  );
  base = `${reg.host}/base/busybox:1`;
  const r = await polyarch(
    [
      ...dockerfileBuild(ctx),
      "--push",
      base,
      // 1-amd64 and 1-arm64 as well: seed 003 picks its base per architecture by tag.
      "--platform-tags",
      "arch",
    ],
    { env: env() },
  );
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await Promise.allSettled([engine?.stop(), reg?.stop()]);
  await cleanup(work);
});

describe("the Docker engine as a Dockerfile builder and as the consumer", () => {
  it("a build stage goes to the engine per platform; seed 004's final stage is native; docker pulls and runs both platforms", async () => {
    const ctx = await helloPerArch(path.join(work, "src"), path.join(work, "seed004"));
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        `FROM ${base} AS prelim`,
        "ARG TARGETARCH",
        'RUN mkdir -p /go/bin && echo "soda for $TARGETARCH built on $(uname -m)" > /go/bin/soda',
        `FROM ${base}`,
        "ARG TARGETARCH",
        "RUN mkdir /app",
        "ADD hello-${TARGETARCH} /app/hello",
        "COPY --from=prelim /go/bin/soda /bin/",
        "WORKDIR /app",
        'ENTRYPOINT ["/app/hello"]',
      ].join("\n"),
    );
    const image = `${reg.host}/seed004/hello:1`;
    const r = await onEngine(ctx, image);
    assert.equal(r.code, 0, r.stderr);
    for (const p of ["linux/amd64", "linux/arm64"])
      assert.match(r.stderr, new RegExp(`stage prelim done for ${p} in .* on docker ${engine.host}`));
    assert.match(r.stderr, /stage 1 done for linux\/arm64 in [0-9.]+s\n/, "the final stage is native");
    assert.match(r.stderr, /Dockerfile: 12 steps ran natively, 4 on docker /);
    for (const [platform, cpu] of [
      ["linux/amd64", "x86_64"],
      ["linux/arm64", "aarch64"],
    ] as const) {
      await engine.docker(["pull", "-q", "--platform", platform, image]);
      const arch = await engine.docker(["image", "inspect", "--format", "{{.Architecture}}", image]);
      assert.equal(arch.trim(), platform.split("/")[1]);
      const soda = await engine.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "cat",
        image,
        "/bin/soda",
      ]);
      assert.equal(
        soda,
        `soda for ${platform.split("/")[1]} built on ${cpu}\n`,
        `${platform}: the delegated stage ran for it`,
      );
      const port = await freePort();
      const name = `hello-${platform.replaceAll("/", "-")}`;
      await engine.docker([
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        `PORT=${port}`,
        image,
      ]);
      try {
        const res = await eventually(() => httpGet(`http://127.0.0.1:${port}/hello`), 30_000);
        assert.equal(res.body, "hello\n", `${platform}: docker run answers /hello`);
      } finally {
        await engine.docker(["rm", "-f", name]).catch(() => "");
      }
      await engine.docker(["rmi", image]);
    }
  });

  it("a service on third-party modules, six platforms pushed by polyarch: docker pulls amd64 and arm64 and it answers; docker load takes the tarball", async () => {
    const src = await gitExample("notes", path.join(work, "notes"));
    const image = `${reg.host}/notes/app:1`;
    const tarball = path.join(work, "notes.tar");
    const r = await polyarch(
      ["build", src, "-p", SIX.join(","), "--push", image, "-o", `tarball:${tarball}`],
      {
        env: { ...env(), GOPROXY: "off", GOFLAGS: "-mod=mod" },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const answers = async (ref: string, arch: string) => {
      const port = await freePort();
      const name = `notes-${arch}-${port}`;
      await engine.docker(["run", "-d", "--name", name, "--network", "host", "-e", `PORT=${port}`, ref]);
      try {
        const h = await eventually(() => httpGet(`http://127.0.0.1:${port}/healthz`), 30_000);
        assert.deepEqual(JSON.parse(h.body), { status: "ok", arch });
      } finally {
        await engine.docker(["rm", "-f", name]).catch(() => "");
      }
    };
    for (const platform of ["linux/amd64", "linux/arm64"]) {
      await engine.docker(["pull", "-q", "--platform", platform, image]);
      await answers(image, platform.split("/")[1]!);
      await engine.docker(["rmi", image]);
    }
    const loaded = await engine.docker(["load", "-i", tarball]);
    const ref = /Loaded image: (\S+)/.exec(loaded)?.[1];
    assert.ok(ref, loaded);
    await answers(ref, os.arch() === "x64" ? "amd64" : os.arch());
  });

  it("seed 003: any Dockerfile with ARG ARCH={{arch}}, each platform's RUN on the engine, -amd64/-arm64 tags and one list; docker pulls and runs each", async () => {
    const ctx = path.join(work, "seed003");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        "ARG ARCH=amd64",
        `FROM ${base}-\${ARCH}`,
        "ARG ARCH",
        'RUN echo "built for ${ARCH} on $(uname -m)" > /built',
        'CMD ["cat", "/built"]',
      ].join("\n"),
    );
    const image = `${reg.host}/seed003/sample-repo:latest`;
    const r = await onEngine(ctx, image, ["--build-arg", "ARCH={{arch}}", "--platform-tags", "arch"]);
    assert.equal(r.code, 0, r.stderr);
    for (const p of ["linux/amd64", "linux/arm64"])
      assert.match(r.stderr, new RegExp(`stage 0 done for ${p} in .* on docker ${engine.host}`));
    for (const [arch, cpu] of [
      ["amd64", "x86_64"],
      ["arm64", "aarch64"],
    ] as const) {
      // The list, pulled for the platform, and seed 003's own per-architecture tag.
      for (const [ref, pull] of [
        [image, ["--platform", `linux/${arch}`]],
        [`${image}-${arch}`, []],
      ] as const) {
        await engine.docker(["pull", "-q", ...pull, ref]);
        assert.equal(
          await engine.docker(["run", "--rm", "--network", "none", ref]),
          `built for ${arch} on ${cpu}\n`,
          `${ref} (${arch})`,
        );
        await engine.docker(["rmi", ref]);
      }
    }
  });

  it("seed 001's FROM scratch + COPY, pushed by polyarch (OCI and --media-types docker): docker pulls and runs each platform, inspects the Docker-typed list; polyarch info checks a docker builder", async () => {
    const ctx = path.join(work, "seed001");
    await unameContext(ctx);
    const image = `${reg.host}/seed001/app:1`;
    const r = await polyarch(
      ["build", "-f", path.join(ctx, "Dockerfile"), ctx, "-p", "linux/amd64,linux/arm64", "--push", image],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, / on (docker|buildah)/, "native only");
    // Docker 20.10's CLI cannot inspect an OCI index; the same build under Docker media types it can.
    await assert.rejects(
      engine.docker(["manifest", "inspect", "--insecure", image]),
      /OCI manifest found|unsupported manifest|no such manifest/,
    );
    const dockerTyped = `${reg.host}/seed001/app:docker`;
    const d = await polyarch([...dockerfileBuild(ctx), "--media-types", "docker", "--push", dockerTyped], {
      env: env(),
    });
    assert.equal(d.code, 0, d.stderr);
    const list = JSON.parse(await engine.docker(["manifest", "inspect", "--insecure", dockerTyped])) as {
      mediaType: string;
      manifests: { mediaType: string; platform: { architecture: string } }[];
    };
    assert.equal(list.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
    assert.deepEqual(
      list.manifests.map((m) => [m.mediaType, m.platform.architecture]),
      [
        ["application/vnd.docker.distribution.manifest.v2+json", "amd64"],
        ["application/vnd.docker.distribution.manifest.v2+json", "arm64"],
      ],
    );
    // polyarch inspect --json prints what docker manifest inspect prints, byte for byte: the
    // list (three-space indent), --verbose and a single manifest (tabs, raw key order).
    const child = list.manifests[0] as unknown as { digest: string };
    for (const args of [
      [dockerTyped],
      [dockerTyped, "--verbose"],
      [`${reg.host}/seed001/app@${child.digest}`],
    ]) {
      const theirs = await engine.docker(["manifest", "inspect", "--insecure", ...args]);
      const ours = await polyarch(["inspect", ...args, "--json"], { env: env() });
      assert.equal(ours.code, 0, ours.stderr);
      assert.equal(ours.stdout, theirs, `polyarch inspect ${args.join(" ")} --json`);
    }
    for (const [platform, cpu] of [
      ["linux/amd64", "x86_64"],
      ["linux/arm64", "aarch64"],
    ] as const)
      for (const ref of [image, dockerTyped]) {
        await engine.docker(["pull", "-q", "--platform", platform, ref]);
        assert.equal(await engine.docker(["run", "--rm", "--network", "none", ref]), `${cpu}\n`);
        await engine.docker(["rmi", ref]);
      }
    // info: the engine is reachable and says its version and native platform.
    const repo = path.join(work, "inforepo");
    await mkdir(repo);
    const git = await gitRepo(repo);
    await copyFile(path.join(ctx, "Dockerfile"), path.join(repo, "Dockerfile"));
    await writeFile(
      path.join(repo, "polyarch.yaml"),
      `images:\n  - name: app\n    dockerfile: Dockerfile\nplatforms: [linux/amd64]\nbuilders:\n  linux/amd64: docker+${engine.host}\n  linux/arm64: docker+unix://${work}/nothing.sock\n`,
    );
    await git("add", ".");
    await git("commit", "-q", "-m", "x");
    const info = await polyarch(["info"], { cwd: repo, env: env() });
    assert.match(
      info.stdout,
      new RegExp(
        `ok +builder linux/amd64 +docker\\+${engine.host.replaceAll("/", "\\/")}: Docker 20\\.10[^,]*, native linux/amd64`,
      ),
    );
    assert.match(info.stdout, /FAIL +builder linux\/arm64 +docker\+unix:.*: engine not reachable/);
    assert.notEqual(info.code, 0);
  });
});
