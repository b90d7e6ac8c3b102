/**
 * Go services with module dependencies (issue 10 §1): examples/notes requires chi, its CORS
 * and rate-limit middleware and render (pinned in go.mod/go.sum) from the module proxy. The
 * modules are fetched by .ci/setup; the tests run with GOPROXY=off, so nothing leaves the
 * machine, or with a stand-in proxy on loopback.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parsePlatform } from "../src/platform/index.js";
import { startPrivateProxy } from "../src/testing/goproxy.js";
import {
  eventually,
  httpGet,
  mustRun,
  runInChroot,
  runUnpacked,
  unpackPlatform,
} from "../src/testing/tools.js";
import { cleanup, gitExample, polyarch, ROOT, SIX, tempDir } from "./_fixture.js";

let work: string;
const offline = () => ({ GOPROXY: "off", GOFLAGS: "-mod=mod", POLYARCH_CACHE_DIR: path.join(work, "cache") });
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];

before(async () => {
  work = await tempDir("modules");
});
after(() => cleanup(work));

describe("Go modules", () => {
  it("a service on third-party modules: six platforms, the same digest twice and from a second clone, and it answers on amd64 and arm64", async () => {
    const src = await gitExample("notes", path.join(work, "clone1"));
    const out = path.join(work, "out");
    const build = (dir: string, o: string, env: Record<string, string>) =>
      polyarch(["build", dir, "-p", SIX.join(","), "-o", `oci:${o}`], { env });
    const a = await build(src, out, offline());
    assert.equal(a.code, 0, a.stderr);
    const again = await build(src, `${out}-again`, offline());
    assert.equal(digestOf(again.stdout), digestOf(a.stdout), "the same digest twice");
    const src2 = await gitExample("notes", path.join(work, "clone2"));
    const second = await build(src2, `${out}-2`, {
      ...offline(),
      POLYARCH_CACHE_DIR: path.join(work, "cache2"),
    });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(
      digestOf(second.stdout),
      digestOf(a.stdout),
      "the same digest from a second clone and cache",
    );
    for (const p of ["linux/amd64", "linux/arm64"]) {
      const dir = await tempDir("notes-run");
      try {
        await runUnpacked(
          `oci:${out}:latest`,
          parsePlatform(p),
          dir,
          { extraEnv: (port) => [`PORT=${port}`] },
          async (base) => {
            const h = await eventually(() => httpGet(`${base}/healthz`), 20_000);
            assert.deepEqual(JSON.parse(h.body), { status: "ok", arch: parsePlatform(p).architecture });
            const post = await fetch(`${base}/notes`, {
              method: "POST",
              body: JSON.stringify({ text: "hi" }),
            });
            assert.equal(post.status, 201);
            assert.deepEqual(JSON.parse((await httpGet(`${base}/notes`)).body), [{ id: 1, text: "hi" }]);
          },
        );
      } finally {
        await cleanup(dir);
      }
    }
  });

  it("--main puts another main package's binary into the same image for every platform; the first stays the entrypoint", async () => {
    const src = await gitExample("notes", path.join(work, "two"));
    await mkdir(path.join(src, "cmd", "hello"), { recursive: true });
    await cp(path.join(ROOT, "examples", "hello", "main.go"), path.join(src, "cmd", "hello", "main.go"));
    const out = path.join(work, "two-out");
    const r = await polyarch(
      ["build", src, "--main", "./cmd/hello", "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`],
      {
        env: offline(),
      },
    );
    assert.equal(r.code, 0, r.stderr);
    for (const [arch, machine] of [
      ["amd64", 0x3e],
      ["arm64", 0xb7],
    ] as const) {
      const dir = await tempDir("two");
      try {
        const { rootfs, args } = await unpackPlatform(
          `oci:${out}:latest`,
          parsePlatform(`linux/${arch}`),
          dir,
        );
        assert.deepEqual(args, ["/app/notes"]);
        for (const bin of ["notes", "hello"]) {
          const elf = await readFile(path.join(rootfs, "app", bin));
          assert.equal(elf.readUInt16LE(18), machine, `/app/${bin} is a ${arch} ELF`);
        }
      } finally {
        await cleanup(dir);
      }
    }
    const same = await polyarch(["build", src, "--main", ".", "-p", "linux/amd64", "-o", `oci:${out}-same`], {
      env: offline(),
    });
    assert.equal(same.code, 1);
    assert.match(same.stderr, /both build a binary named notes/);
  });

  it("a go.work workspace: a main package using a module of the workspace builds, offline", async () => {
    const ws = path.join(work, "ws");
    await mkdir(path.join(ws, "app"), { recursive: true });
    await mkdir(path.join(ws, "greet"), { recursive: true });
    await writeFile(path.join(ws, "go.work"), "go 1.22\n\nuse (\n\t./app\n\t./greet\n)\n");
    await writeFile(path.join(ws, "greet", "go.mod"), "module example.com/greet\n\ngo 1.22\n");
    await writeFile(
      path.join(ws, "greet", "greet.go"),
      'package greet\n\nfunc Hello() string { return "hello from the workspace" }\n',
    );
    await writeFile(
      path.join(ws, "app", "go.mod"),
      "module example.com/app\n\ngo 1.22\n\nrequire example.com/greet v0.0.0\n",
    );
    await writeFile(
      path.join(ws, "app", "main.go"),
      'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n',
    );
    const out = path.join(work, "ws-out");
    const r = await polyarch(["build", path.join(ws, "app"), "-p", "linux/arm64", "-o", `oci:${out}`], {
      env: { ...offline(), GOFLAGS: "", SOURCE_DATE_EPOCH: "1700000000" },
    });
    assert.equal(r.code, 0, r.stderr);
    const dir = await tempDir("ws");
    try {
      const { rootfs } = await unpackPlatform(`oci:${out}:latest`, parsePlatform("linux/arm64"), dir);
      assert.equal((await readFile(path.join(rootfs, "app", "app"))).readUInt16LE(18), 0xb7);
      assert.equal(
        (await import("node:child_process")).execFileSync("chroot", [rootfs, "/app/app"]).toString(),
        "hello from the workspace\n",
      );
    } finally {
      await cleanup(dir);
    }
  });

  it("a module that cannot be downloaded or does not match go.sum is one sentence before any compile; secrets stay out", async () => {
    // A stand-in proxy on loopback that has nothing.
    const seen: string[] = [];
    const proxy = createServer((req, res) => {
      seen.push(req.url ?? "");
      res.writeHead(404).end("not found");
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const port = (proxy.address() as { port: number }).port;
    try {
      const src = await gitExample("notes", path.join(work, "bad"));
      const gomod = await readFile(path.join(src, "go.mod"), "utf8");
      await writeFile(path.join(src, "go.mod"), `${gomod}\nrequire example.org/nowhere/lib v1.0.0\n`);
      await writeFile(
        path.join(src, "go.sum"),
        `${await readFile(path.join(src, "go.sum"), "utf8")}example.org/nowhere/lib v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nexample.org/nowhere/lib v1.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n`,
      );
      const out = path.join(work, "bad-out");
      const env = (proxyUrl: string) => ({
        GOPROXY: proxyUrl,
        GONOSUMDB: "example.org",
        GOFLAGS: "-mod=mod",
        POLYARCH_CACHE_DIR: path.join(work, "cache"),
      });
      const r = await polyarch(["build", src, "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`], {
        env: env(`http://127.0.0.1:${port}`),
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /cannot download the Go module example\.org\/nowhere\/lib@v1\.0\.0 \(GOPROXY=http:\/\/127\.0\.0\.1:\d+\): .*404/,
      );
      assert.ok(
        seen.some((u) => u.includes("example.org/nowhere")),
        "the stand-in proxy was asked",
      );
      assert.doesNotMatch(r.stderr, /go build failed|internal error|\n\s+at /, "no compile ran");
      assert.ok(!existsSync(out), "nothing written");
      // A proxy URL with credentials: named without them.
      const c = await polyarch(["build", src, "-p", "linux/amd64", "-o", `oci:${out}`], {
        env: env(`http://ci:s3cr3t-token@127.0.0.1:${port}`),
      });
      assert.equal(c.code, 1, c.stderr);
      assert.match(
        c.stderr,
        /cannot download the Go module example\.org\/nowhere\/lib@v1\.0\.0 \(GOPROXY=http:\/\/\*\*\*@127/,
      );
      assert.doesNotMatch(c.stderr + c.stdout, /s3cr3t-token/);
      assert.ok(!existsSync(out), "nothing written");

      // go.sum that does not match the module in the cache.
      const src2 = await gitExample("notes", path.join(work, "badsum"));
      const sum = await readFile(path.join(src2, "go.sum"), "utf8");
      await writeFile(
        path.join(src2, "go.sum"),
        sum.replace(
          /(github\.com\/go-chi\/cors v1\.2\.2 h1:)\S+/,
          "$1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
      );
      const s = await polyarch(["build", src2, "-p", "linux/amd64", "-o", `oci:${out}`], { env: offline() });
      assert.equal(s.code, 1, s.stderr);
      assert.match(
        s.stderr,
        /cannot download the Go module github\.com\/go-chi\/cors@v1\.2\.2 .*checksum mismatch/,
      );
      assert.match(s.stderr, /go\.sum does not match/);
      assert.ok(!existsSync(out), "nothing written");
    } finally {
      proxy.close();
    }
  });

  it("a private module behind a proxy that wants credentials: .netrc gives them to go, the image runs; a wrong password is one sentence without it", async () => {
    const password = "pr1vate-pa55";
    await mkdir(path.join(work, "private"), { recursive: true });
    const proxy = await startPrivateProxy(
      path.join(work, "private"),
      [
        {
          path: "private.example/acme/greet",
          version: "v1.0.0",
          files: {
            "go.mod": "module private.example/acme/greet\n\ngo 1.22\n",
            "greet.go":
              'package greet\n\n// Hello is the greeting only this company has.\nfunc Hello() string { return "hello from a private module" }\n',
          },
        },
      ],
      { user: "ci", password },
    );
    try {
      const dir = path.join(work, "private", "app");
      // The go command sends .netrc credentials over HTTPS only, to the machine host:port.
      await mkdir(dir, { recursive: true });
      await writeFile(
        path.join(dir, "go.mod"),
        "module example.com/app\n\ngo 1.22\n\nrequire private.example/acme/greet v1.0.0\n",
      );
      await writeFile(
        path.join(dir, "main.go"),
        'package main\n\nimport (\n\t"fmt"\n\n\t"private.example/acme/greet"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n',
      );
      const netrc = async (name: string, pw: string) => {
        const f = path.join(work, "private", name);
        await writeFile(f, `machine ${proxy.host} login ci password ${pw}\n`, { mode: 0o600 });
        return f;
      };
      const modcache = path.join(work, "private", "modcache");
      const env = (netrcFile: string) => ({
        GOPROXY: proxy.url,
        GONOSUMDB: "private.example",
        GOFLAGS: "-mod=mod -modcacherw",
        GOMODCACHE: modcache,
        NETRC: netrcFile,
        SSL_CERT_FILE: proxy.caFile,
        POLYARCH_CACHE_DIR: path.join(work, "private", "cache"),
        SOURCE_DATE_EPOCH: "0",
      });
      const good = await netrc("netrc", password);
      // go.sum as the developer has it, through the same proxy; then an empty module cache.
      await mustRun("go", ["mod", "tidy"], { cwd: dir, env: { ...process.env, ...env(good) } });
      await rm(modcache, { recursive: true, force: true });
      const out = path.join(work, "private", "out");
      const r = await polyarch(["build", dir, "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`], {
        env: env(good),
      });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(
        proxy.requests.some((q) => q.authorized && q.url.endsWith("/v1.0.0.zip")),
        "the module zip came from the proxy, with the .netrc credentials",
      );
      const unpacked = await tempDir("private-run");
      try {
        const {
          rootfs,
          args,
          env: imageEnv,
        } = await unpackPlatform(`oci:${out}:latest`, parsePlatform("linux/arm64"), unpacked);
        const ran = await runInChroot(rootfs, parsePlatform("linux/arm64"), args, imageEnv);
        assert.equal(ran.output.trim(), "hello from a private module");
      } finally {
        await cleanup(unpacked);
      }
      // The wrong password: the module and the proxy named, the password nowhere.
      await rm(modcache, { recursive: true, force: true });
      const bad = await polyarch(["build", dir, "-p", "linux/amd64", "-o", `oci:${out}-bad`], {
        env: {
          ...env(await netrc("netrc-bad", `${password}-old`)),
          POLYARCH_CACHE_DIR: path.join(work, "private", "cache2"),
        },
      });
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(
        bad.stderr,
        /cannot download the Go module private\.example\/acme\/greet@v1\.0\.0 \(GOPROXY=https:\/\/127\.0\.0\.1:\d+\): .*(401|[Uu]nauthorized)/,
      );
      assert.doesNotMatch(bad.stderr + bad.stdout, new RegExp(password));
      assert.ok(!existsSync(`${out}-bad`), "nothing written");
    } finally {
      await proxy.close();
    }
  });
});
