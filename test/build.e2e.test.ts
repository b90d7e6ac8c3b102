/**
 * End to end: polyarch builds the maintenance proxy for six platforms; independent tools read
 * the result (skopeo inspects it and selects each platform, umoci unpacks it), and each
 * platform's entrypoint runs under chroot — natively or under qemu-user — and answers its probes.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { layoutArtifact } from "../src/layout/artifact.js";
import { OciLayout } from "../src/layout/index.js";
import { parsePlatform } from "../src/platform/index.js";
import {
  eventually,
  freePort,
  httpGet,
  mustRun,
  run,
  runUnpacked,
  startInChroot,
  unpackPlatform,
} from "../src/testing/tools.js";
import { validateArtifact } from "../src/testing/validate.js";
import { COMMIT_TIME, cleanup, gitExample, polyarch, ROOT, SIX, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let layoutDir: string;
let digest: string;
const cacheA = () => path.join(work, "cache-a");
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];

before(async () => {
  work = await tempDir("e2e");
  src = await gitExample("maintenance-proxy", path.join(work, "clone1"));
  layoutDir = path.join(work, "out");
  const r = await polyarch(
    [
      "build",
      src,
      "--platform",
      SIX.join(","),
      "--tag",
      "v1",
      "--tag",
      "latest",
      "--port",
      "8989",
      "--output",
      `oci:${layoutDir}`,
    ],
    { env: { POLYARCH_CACHE_DIR: cacheA() } },
  );
  assert.equal(r.code, 0, r.stderr);
  const m = /@(sha256:[a-f0-9]{64})/.exec(r.stdout);
  assert.ok(m, r.stdout);
  digest = m[1]!;
});
after(() => cleanup(work));

describe("polyarch build → OCI layout", () => {
  it("prints one reference per tag and records the tags in index.json", async () => {
    const layout = await OciLayout.open(layoutDir);
    const tags = (await layout.tags()).map((t) => t.tag).sort();
    assert.deepEqual(tags, ["latest", "v1"]);
    for (const t of await layout.tags()) assert.equal(t.descriptor.digest, digest);
  });

  it("is read by skopeo: the raw index has our digest and all six platforms", async () => {
    const raw = Buffer.from(await mustRun("skopeo", ["inspect", "--raw", `oci:${layoutDir}:v1`]), "utf8");
    const { sha256 } = await import("../src/digest/index.js");
    assert.equal(sha256(raw), digest);
    const index = JSON.parse(raw.toString()) as {
      mediaType: string;
      manifests: { platform: { os: string; architecture: string; variant?: string } }[];
    };
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    const plats = index.manifests
      .map((m) => [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join("/"))
      .sort();
    assert.deepEqual(plats, [...SIX].sort());
  });

  it("passes full validation: every digest, size and diffID re-derived", async () => {
    const layout = await OciLayout.open(layoutDir);
    await validateArtifact(await layoutArtifact(layout, await layout.resolve("v1")));
  });

  it("sets the config: entrypoint, env, port, platform, created from the commit", async () => {
    const out = await mustRun("skopeo", [
      "inspect",
      "--config",
      "--override-arch",
      "arm",
      "--override-variant",
      "v7",
      `oci:${layoutDir}:v1`,
    ]);
    const cfg = JSON.parse(out) as {
      architecture: string;
      variant: string;
      created: string;
      config: { Entrypoint: string[]; ExposedPorts: object; Env: string[] };
      history: unknown[];
    };
    assert.equal(cfg.architecture, "arm");
    assert.equal(cfg.variant, "v7");
    assert.equal(cfg.created, new Date(Number(COMMIT_TIME) * 1000).toISOString().replace(".000", ""));
    assert.deepEqual(cfg.config.Entrypoint, ["/app/maintenance-proxy"]);
    assert.deepEqual(Object.keys(cfg.config.ExposedPorts), ["8989/tcp"]);
    assert.ok(cfg.config.Env.includes("POLYARCH_DATA_PATH=/app/data"));
    assert.equal(cfg.history.length, 2);
  });

  for (const p of SIX) {
    it(`runs the ${p} entrypoint from umoci's unpack under chroot and answers /healthz and /readyz`, async () => {
      const dir = await tempDir(`run-${p.replaceAll("/", "-")}`);
      try {
        const platform = parsePlatform(p);
        const { rootfs, args, env } = await unpackPlatform(`oci:${layoutDir}:v1`, platform, dir);
        assert.deepEqual(args, ["/app/maintenance-proxy"]);
        const data = await readFile(path.join(rootfs, "app", "data", "README.txt"), "utf8");
        assert.match(data, /static files/);
        const port = await freePort();
        const { child, output } = await startInChroot(rootfs, platform, [...args, `-port=${port}`], env);
        try {
          const base = `http://127.0.0.1:${port}`;
          const first = await eventually(() => httpGet(`${base}/healthz`), 20_000);
          assert.equal(first.status, 200);
          const early = await httpGet(`${base}/readyz`);
          // Under emulation start-up can take longer than the one-second warm-up; before it ends the answer must be NOK.
          if (early.status === 503) assert.match(early.body, /Ready NOK/);
          const ready = await eventually(async () => {
            const r = await httpGet(`${base}/readyz`);
            if (r.status !== 200) throw new Error(`still ${r.status}`);
            return r;
          }, 15_000);
          assert.match(ready.body, /Ready OK/);
          await eventually(async () => {
            const log = output();
            assert.match(log, new RegExp(`Starting the service listening on port :${port} \\.\\.\\.`));
            assert.match(log, /forwarding to -> http:\/\/my-cdn\.s3-website\.my-region\.amazonaws\.com/);
            assert.match(log, /Ready NOK[\s\S]*Ready OK/);
          }, 5_000);
        } finally {
          child.kill("SIGTERM");
          await new Promise((r) => child.once("exit", r));
        }
        assert.match(output(), /shutting down/, "graceful shutdown on SIGTERM");
      } finally {
        await cleanup(dir);
      }
    });
  }
});

describe("reproducibility", () => {
  it("gives the same index digest when built again", async () => {
    const out = path.join(work, "again");
    const r = await polyarch(
      ["build", src, "-p", SIX.join(","), "-t", "v1", "--port", "8989", "-o", `oci:${out}`, "--json", "-q"],
      { env: { POLYARCH_CACHE_DIR: cacheA() } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { digest: string }).digest, digest);
  });

  it("trims cache entries unused for five days, once a day, and still gives the same digest", async () => {
    const old = new Date(Date.now() - 6 * 24 * 3600_000);
    const stale = path.join(cacheA(), "stat", "0".repeat(64));
    await mkdir(path.dirname(stale), { recursive: true });
    await writeFile(stale, "sha256:" + "0".repeat(64));
    await utimes(stale, old, old);
    await writeFile(path.join(cacheA(), "trim.txt"), "0\n");
    await utimes(path.join(cacheA(), "trim.txt"), old, old);
    const out = path.join(work, "trimmed");
    const r = await polyarch(
      ["build", src, "-p", SIX.join(","), "-t", "v1", "--port", "8989", "-o", `oci:${out}`, "--json", "-q"],
      { env: { POLYARCH_CACHE_DIR: cacheA() } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { digest: string }).digest, digest);
    assert.ok(!existsSync(stale), "the stale entry is gone");
    assert.ok(Date.now() - (await stat(path.join(cacheA(), "trim.txt"))).mtimeMs < 3600_000);
  });

  it("gives the same digest from a second clone, a cold polyarch cache, another TZ and TMPDIR, and Node 22", async () => {
    const clone2 = path.join(work, "clone2", "mp");
    await mustRun("git", ["clone", "-q", src, clone2]);
    const node22 = path.join(ROOT, "node_modules", "node22", "bin", "node");
    const r = await polyarch(
      [
        "build",
        clone2,
        "-p",
        SIX.join(","),
        "-t",
        "v1",
        "--port",
        "8989",
        "-o",
        `oci:${path.join(work, "out2")}`,
        "--json",
        "-q",
      ],
      {
        env: {
          POLYARCH_CACHE_DIR: path.join(work, "cache-b"),
          TZ: "Pacific/Kiritimati",
          TMPDIR: path.join(work, "clone2"),
        },
        node: node22,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { digest: string }).digest, digest);
  });

  it("a new checkout starts from the binaries kept for its module; checkouts that differ, built at once on one cache, each get their own", async () => {
    const cache = path.join(work, "cache-kept");
    const answer = async (layout: string) => {
      const dir = await tempDir("kept-run");
      try {
        let body = "";
        await runUnpacked(
          `oci:${layout}:latest`,
          parsePlatform("linux/amd64"),
          dir,
          { extraEnv: (port) => [`PORT=${port}`] },
          async (base) => {
            body = (await eventually(() => httpGet(`${base}/hello`), 10_000)).body;
          },
        );
        return body.trim();
      } finally {
        await cleanup(dir);
      }
    };
    const checkout = async (name: string, reply: string) => {
      const dir = await gitExample("hello", path.join(work, "kept", name));
      const main = path.join(dir, "main.go");
      await writeFile(
        main,
        (await readFile(main, "utf8")).replace('"hello\\n"', JSON.stringify(`${reply}\n`)),
      );
      return dir;
    };
    const build = (dir: string, out: string) =>
      polyarch(["build", dir, "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`, "-q"], {
        env: { POLYARCH_CACHE_DIR: cache, SOURCE_DATE_EPOCH: "0" },
      });
    const one = await checkout("one", "hello from one");
    const first = await build(one, path.join(work, "kept-one"));
    assert.equal(first.code, 0, first.stderr);
    assert.ok(digestOf(first.stdout), first.stdout);
    assert.equal(await answer(path.join(work, "kept-one")), "hello from one");
    // The same code in a new directory: the same image.
    const same = await checkout("same", "hello from one");
    const again = await build(same, path.join(work, "kept-same"));
    assert.equal(again.code, 0, again.stderr);
    assert.equal(digestOf(again.stdout), digestOf(first.stdout));
    // Two checkouts of the same module with different code, at the same time, on one cache.
    const [a, b] = [await checkout("a", "hello from a"), await checkout("b", "hello from b")];
    const [ra, rb] = await Promise.all([
      build(a, path.join(work, "kept-a")),
      build(b, path.join(work, "kept-b")),
    ]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(await answer(path.join(work, "kept-a")), "hello from a");
    assert.equal(await answer(path.join(work, "kept-b")), "hello from b");
    // And after them, the first code again is the first image.
    const back = await build(same, path.join(work, "kept-back"));
    assert.equal(digestOf(back.stdout), digestOf(first.stdout));
  });

  it("changes the digest when SOURCE_DATE_EPOCH changes", async () => {
    const r = await polyarch(
      ["build", src, "-p", "linux/amd64", "-o", `oci:${path.join(work, "epoch")}`, "--json", "-q"],
      { env: { POLYARCH_CACHE_DIR: cacheA(), SOURCE_DATE_EPOCH: "1" } },
    );
    assert.equal(r.code, 0, r.stderr);
    const r2 = await polyarch(
      ["build", src, "-p", "linux/amd64", "-o", `oci:${path.join(work, "epoch")}`, "--json", "-q"],
      { env: { POLYARCH_CACHE_DIR: cacheA(), SOURCE_DATE_EPOCH: "2" } },
    );
    assert.notEqual(
      (JSON.parse(r.stdout) as { digest: string }).digest,
      (JSON.parse(r2.stdout) as { digest: string }).digest,
    );
  });
});

describe("outputs and inspect", () => {
  it("writes a tarball that skopeo reads as docker-archive and as oci-archive", async () => {
    const tar = path.join(work, "mp.tar");
    const r = await polyarch(
      ["build", src, "-p", "linux/amd64,linux/arm64", "-t", "v1", "-o", `tarball:${tar}`],
      { env: { POLYARCH_CACHE_DIR: cacheA() } },
    );
    assert.equal(r.code, 0, r.stderr);
    const docker = JSON.parse(await mustRun("skopeo", ["inspect", `docker-archive:${tar}`])) as {
      Architecture: string;
      RepoTags: string[];
      Layers: string[];
    };
    assert.equal(docker.Architecture, "amd64");
    assert.equal(docker.Layers.length, 2);
    const oci = JSON.parse(await mustRun("skopeo", ["inspect", "--raw", `oci-archive:${tar}:v1`])) as {
      manifests: unknown[];
    };
    assert.equal(oci.manifests.length, 2);
    const names = (await mustRun("tar", ["-tf", tar])).split("\n");
    assert.ok(
      names.includes("manifest.json") && names.includes("index.json") && names.includes("oci-layout"),
    );
  });

  it("inspect prints docker manifest inspect's JSON shape and a table", async () => {
    const r = await polyarch(["inspect", `oci:${layoutDir}:v1`, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith('{\n   "schemaVersion": 2,'), "three-space indent like docker");
    const j = JSON.parse(r.stdout) as { manifests: Record<string, unknown>[] };
    assert.deepEqual(Object.keys(j.manifests[0]!), ["mediaType", "size", "digest", "platform"]);
    const t = await polyarch(["inspect", `oci:${layoutDir}:v1`]);
    for (const p of SIX) assert.match(t.stdout, new RegExp(`^${p}\\s+sha256:`, "m"));
    const v = JSON.parse(
      (await polyarch(["inspect", `oci:${layoutDir}:v1`, "--json", "--verbose"])).stdout,
    ) as { Descriptor: { platform: object }; OCIManifest: { layers: unknown[] } }[];
    assert.equal(v.length, 6);
    assert.equal(v[0]!.OCIManifest.layers.length, 2);
    const one = await polyarch(["inspect", `oci:${layoutDir}:v1`, "--platform", "linux/s390x"]);
    assert.match(one.stdout, /platform:\s+linux\/s390x/);
    const raw = await polyarch(["inspect", `oci:${layoutDir}:v1`, "--raw"]);
    assert.equal(raw.stdout, await mustRun("skopeo", ["inspect", "--raw", `oci:${layoutDir}:v1`]));
  });

  it("builds the hello example, whose binary answers GET /hello", async () => {
    const hello = await gitExample("hello", path.join(work, "hello-src"));
    const out = path.join(work, "hello-out");
    const r = await polyarch(
      ["build", hello, "-p", "linux/amd64,linux/arm64", "--port", "8080", "-o", `oci:${out}`],
      { env: { POLYARCH_CACHE_DIR: cacheA() } },
    );
    assert.equal(r.code, 0, r.stderr);
    const dir = await tempDir("hello-run");
    try {
      await runUnpacked(
        `oci:${out}:latest`,
        parsePlatform("linux/arm64"),
        dir,
        { extraEnv: (port) => [`PORT=${port}`] },
        async (base) => {
          const res = await eventually(() => httpGet(`${base}/hello`), 20_000);
          assert.equal(res.status, 200);
          assert.equal(res.body, "hello\n");
        },
      );
    } finally {
      await cleanup(dir);
    }
  });
});

describe("debug info", () => {
  /** A file of one platform's image, unpacked by umoci. */
  const unpackedFile = async (ref: string, platform: string, file: string, label: string) => {
    const dir = path.join(work, `${label}-unpacked`);
    await mkdir(dir, { recursive: true });
    const { rootfs } = await unpackPlatform(ref, parsePlatform(platform), dir);
    return path.join(rootfs, file);
  };
  /** Section names of an ELF file, as readelf lists them. */
  const sections = async (file: string) =>
    [...(await mustRun("readelf", ["-S", "-W", file])).matchAll(/\]\s+(\.\S+)/g)].map((m) => m[1]!);
  /** Builds a program that panics three calls deep for linux/amd64 and returns its binary, unpacked. */
  const panicky = async (label: string, flags: string[], env: Record<string, string> = {}) => {
    const dir = path.join(work, `panicky-${label}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "go.mod"), "module example.com/panicky\n\ngo 1.22\n");
    await writeFile(
      path.join(dir, "main.go"),
      [
        "package main",
        "",
        "func crash(n int) {",
        "\tif n == 3 {",
        '\t\tpanic("boom")',
        "\t}",
        "\tcrash(n + 1)",
        "}",
        "",
        "func main() { crash(0) }",
        "",
      ].join("\n"),
    );
    const out = path.join(work, `panicky-${label}-out`);
    const r = await polyarch(["build", dir, "-q", "-p", "linux/amd64", "-o", `oci:${out}`, ...flags], {
      env: { POLYARCH_CACHE_DIR: cacheA(), SOURCE_DATE_EPOCH: "0", ...env },
    });
    assert.equal(r.code, 0, r.stderr);
    return unpackedFile(`oci:${out}:latest`, "linux/amd64", "app/panicky", `panicky-${label}`);
  };

  it("leaves DWARF and the symbol table out by default; build info and whole stack traces stay", async () => {
    const bin = await panicky("default", []);
    const names = await sections(bin);
    assert.ok(names.includes(".text") && names.includes(".gopclntab"), names.join(" "));
    assert.deepEqual(
      names.filter((n) => /debug|^\.symtab$/.test(n)),
      [],
      `sections: ${names.join(" ")}`,
    );
    assert.match(await mustRun("go", ["version", "-m", bin]), /path\s+example\.com\/panicky/);
    const r = await run(bin, []);
    assert.equal(r.code, 2);
    // Function names, arguments and file:line come from the pclntab, which stripping keeps.
    assert.match(r.stderr, /panic: boom/);
    assert.match(r.stderr, /main\.crash\([^)]*\)\n\s+example\.com\/panicky\/main\.go:5 /);
    assert.match(r.stderr, /main\.main\(\)\n\s+example\.com\/panicky\/main\.go:10 /);
    // The default build's six maintenance-proxy binaries are stripped too.
    const mp = await sections(
      await unpackedFile(`oci:${layoutDir}:v1`, "linux/arm64", "app/maintenance-proxy", "mp-arm64"),
    );
    assert.deepEqual(
      mp.filter((n) => /debug|^\.symtab$/.test(n)),
      [],
    );
  });

  it("keeps them with --debug-info", async () => {
    const names = await sections(await panicky("debug", ["--debug-info"]));
    assert.ok(
      names.some((n) => /^\.z?debug_info$/.test(n)),
      names.join(" "),
    );
    assert.ok(names.includes(".symtab"), names.join(" "));
  });

  it("leaves the link flags to GOFLAGS when it sets -ldflags", async () => {
    const names = await sections(await panicky("goflags", [], { GOFLAGS: "-ldflags=-w" }));
    // GOFLAGS asked for -w only: the symbol table stays, since polyarch did not add its -s.
    assert.ok(names.includes(".symtab"), names.join(" "));
  });
});
