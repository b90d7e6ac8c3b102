/**
 * `polyarch resolve` (issue 10 §3): a two-image Deployment whose images are polyarch://
 * import paths is built, pushed to a real registry and printed with digests skopeo finds.
 */
import assert from "node:assert/strict";
import { cp, mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, polyarch, ROOT, tempDir } from "./_fixture.js";

let work: string;
let reg: RunningRegistry;
before(async () => {
  work = await tempDir("resolve");
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  await cleanup(work);
});

describe("polyarch resolve", () => {
  it("builds and pushes each polyarch:// reference and prints the YAML with digests; a package that is no main is refused", async () => {
    // One module, two main packages: the notes service (third-party modules) and hello.
    const repo = path.join(work, "shop");
    await cp(path.join(ROOT, "examples", "notes"), repo, { recursive: true });
    await mkdir(path.join(repo, "cmd", "notes"), { recursive: true });
    await rename(path.join(repo, "main.go"), path.join(repo, "cmd", "notes", "main.go"));
    await rename(path.join(repo, "main_test.go"), path.join(repo, "cmd", "notes", "main_test.go"));
    await mkdir(path.join(repo, "cmd", "hello"), { recursive: true });
    await cp(path.join(ROOT, "examples", "hello", "main.go"), path.join(repo, "cmd", "hello", "main.go"));
    await mkdir(path.join(repo, "lib"), { recursive: true });
    await writeFile(path.join(repo, "lib", "lib.go"), 'package lib\n\nconst Name = "lib"\n');
    const deploy = [
      "# the shop: two images, built by polyarch resolve",
      "apiVersion: apps/v1",
      "kind: Deployment",
      "metadata: { name: shop }",
      "spec:",
      "  template:",
      "    spec:",
      "      containers:",
      "        - name: notes",
      "          image: polyarch://example.com/notes/cmd/notes",
      "        - name: hello",
      '          image: "polyarch://example.com/notes/cmd/hello"',
      "",
    ].join("\n");
    await writeFile(path.join(repo, "deploy.yaml"), deploy);
    const env = {
      GOPROXY: "off",
      GOFLAGS: "-mod=mod",
      SOURCE_DATE_EPOCH: "1700000000",
      POLYARCH_CACHE_DIR: path.join(work, "cache"),
    };
    const prefix = `${reg.host}/acme`;
    const r = await polyarch(
      ["resolve", "-f", "deploy.yaml", "--push", prefix, "-p", "linux/amd64,linux/arm64"],
      {
        cwd: repo,
        env,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.ok(
      out.startsWith("# the shop: two images, built by polyarch resolve\n"),
      "comments and layout kept",
    );
    assert.doesNotMatch(out, /polyarch:\/\//);
    for (const name of ["notes", "hello"]) {
      const m = new RegExp(`${prefix.replaceAll(".", "\\.")}/${name}@(sha256:[a-f0-9]{64})`).exec(out);
      assert.ok(m, `${name} in\n${out}`);
      const raw = await mustRun("skopeo", [
        "inspect",
        "--raw",
        "--tls-verify=false",
        `docker://${prefix}/${name}@${m[1]}`,
      ]);
      const index = JSON.parse(raw) as { manifests: { platform: { architecture: string } }[] };
      assert.deepEqual(
        index.manifests.map((x) => x.platform.architecture),
        ["amd64", "arm64"],
      );
    }
    // A reference to a package that is not main, and to none at all: one sentence, no output.
    for (const [ref, re] of [
      ["example.com/notes/lib", /polyarch:\/\/example\.com\/notes\/lib is package lib, not a main package/],
      ["example.com/notes/nope", /polyarch:\/\/example\.com\/notes\/nope is no Go package here/],
    ] as const) {
      await writeFile(path.join(repo, "bad.yaml"), `image: polyarch://${ref}\n`);
      const b = await polyarch(["resolve", "-f", "bad.yaml", "--push", prefix], { cwd: repo, env });
      assert.equal(b.code, 1, b.stderr);
      assert.match(b.stderr, re);
      assert.equal(b.stdout, "");
    }
  });

  it("--base puts every image on a base, and -p all takes the base's platforms (ko's KO_DEFAULTBASEIMAGE and --platform=all)", async () => {
    const repo = path.join(work, "based");
    await cp(path.join(ROOT, "examples", "hello"), repo, { recursive: true });
    await writeFile(path.join(repo, "d.yaml"), "image: polyarch://./\n");
    const env = { SOURCE_DATE_EPOCH: "1700000000", POLYARCH_CACHE_DIR: path.join(work, "cache-based") };
    // The base: one file, for two platforms, in the same registry.
    const ctx = path.join(work, "base-ctx");
    await mkdir(path.join(ctx, "etc"), { recursive: true });
    await writeFile(path.join(ctx, "etc", "motd"), "based\n");
    await writeFile(path.join(ctx, "Dockerfile"), "FROM scratch\nCOPY etc/ /etc/\n");
    const base = `${reg.host}/bases/static:1`;
    const b = await polyarch(
      [
        "build",
        "-q",
        "-f",
        path.join(ctx, "Dockerfile"),
        ctx,
        "-p",
        "linux/arm64,linux/s390x",
        "--push",
        base,
      ],
      { env },
    );
    assert.equal(b.code, 0, b.stderr);
    const baseIndex = JSON.parse(
      await mustRun("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${base}`]),
    ) as { manifests: { digest: string }[] };
    const baseLayer = (
      JSON.parse(
        await mustRun("skopeo", [
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${reg.host}/bases/static@${baseIndex.manifests[0]!.digest}`,
        ]),
      ) as { layers: { digest: string }[] }
    ).layers[0]!.digest;

    const prefix = `${reg.host}/based`;
    const r = await polyarch(["resolve", "-f", "d.yaml", "--push", prefix, "-p", "all", "--base", base], {
      cwd: repo,
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    const digest = new RegExp(`${prefix.replaceAll(".", "\\.")}/hello@(sha256:[a-f0-9]{64})`).exec(
      r.stdout,
    )?.[1];
    assert.ok(digest, r.stdout);
    const index = JSON.parse(
      await mustRun("skopeo", [
        "inspect",
        "--raw",
        "--tls-verify=false",
        `docker://${prefix}/hello@${digest}`,
      ]),
    ) as { manifests: { digest: string; platform: { architecture: string } }[] };
    assert.deepEqual(
      index.manifests.map((m) => m.platform.architecture),
      ["arm64", "s390x"],
    );
    for (const m of index.manifests) {
      const mf = JSON.parse(
        await mustRun("skopeo", [
          "inspect",
          "--raw",
          "--tls-verify=false",
          `docker://${prefix}/hello@${m.digest}`,
        ]),
      ) as { layers: { digest: string }[]; annotations: Record<string, string> };
      assert.equal(mf.layers.length, 2);
      assert.equal(mf.layers[0]!.digest, baseLayer, "the base's layer comes first");
      assert.equal(mf.annotations["org.opencontainers.image.base.name"], base);
    }
    const bad = await polyarch(["resolve", "-f", "d.yaml", "--push", prefix, "-p", "all"], {
      cwd: repo,
      env,
    });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /--platform all builds every platform of the base image, and no --base is given/,
    );
    assert.equal(bad.stdout, "");
  });

  it("--cgo (or CGO_ENABLED=1) builds with cgo: a platform without a C cross compiler is named before any compile, nothing is pushed", async () => {
    const repo = path.join(work, "cgo");
    await cp(path.join(ROOT, "examples", "hello"), repo, { recursive: true });
    await writeFile(path.join(repo, "d.yaml"), "image: polyarch://./\n");
    const env = { SOURCE_DATE_EPOCH: "1700000000", POLYARCH_CACHE_DIR: path.join(work, "cache-cgo") };
    const prefix = `${reg.host}/cgo`;
    for (const [args, extra] of [
      [["--cgo"], {}],
      [[], { CGO_ENABLED: "1" }],
    ] as const) {
      const r = await polyarch(
        ["resolve", "-f", "d.yaml", "--push", prefix, "-p", "linux/amd64,linux/s390x", ...args],
        { cwd: repo, env: { ...env, ...extra } },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /no C compiler for the cgo build on linux\/s390x/);
      assert.equal(r.stdout, "");
    }
    const tags = await mustRun("skopeo", [
      "list-tags",
      "--tls-verify=false",
      `docker://${prefix}/hello`,
    ]).catch((e: Error) => e.message);
    assert.doesNotMatch(tags, /latest/, "nothing was pushed");
  });
});
