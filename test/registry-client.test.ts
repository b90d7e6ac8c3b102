/** The registry client as a library, against the real registry: chunked uploads, credential helpers, corrupt blobs. */
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { sha256 } from "../src/digest/index.js";
import { DockerConfigCredentials, RegistryClient, Transport } from "../src/registry/index.js";
import { fixedBlocks } from "../src/util/blocks.js";
import { startProxy } from "../src/testing/proxy.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { pieces } from "./_data.js";
import { cleanup, polyarch, tempDir } from "./_fixture.js";

let work: string;
let reg: RunningRegistry;
before(async () => {
  work = await tempDir("client");
  reg = await startRegistry();
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

const blob = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const desc = { digest: sha256(blob), size: blob.length };

describe("registry client", () => {
  it("uploads in chunks with Content-Range, then reads the blob back verified", async () => {
    const proxy = await startProxy(reg.host);
    const client = new RegistryClient(new Transport());
    try {
      const repo = { registry: proxy.host, repository: "lib/chunks" };
      const pieces = [blob.subarray(0, 1000), blob.subarray(1000)];
      assert.equal(await client.uploadBlob(repo, desc, () => pieces, { chunkSize: 64 * 1024 }), "uploaded");
      const patches = proxy.log.filter((l) => l.method === "PATCH");
      assert.equal(patches.length, 5, "300 000 bytes in 64 KiB chunks");
      assert.equal(await client.uploadBlob(repo, desc, () => [blob]), "exists");
      const back: Uint8Array[] = [];
      for await (const c of client.blob(repo, desc)) back.push(c);
      assert.deepEqual(Buffer.concat(back), blob);
      assert.equal(
        (await client.referrers(repo, desc.digest)).manifests.length,
        0,
        "no referrers API: an empty index",
      );
    } finally {
      await client.transport.close();
      await proxy.stop();
    }
  });

  it("resumes a blob download cut halfway with Range, and still checks the digest", async () => {
    const big = Buffer.from(Array.from({ length: 3 * 1024 * 1024 }, (_, i) => (i * 31) % 256));
    const d = { digest: sha256(big), size: big.length };
    const direct = new RegistryClient(new Transport());
    const proxy = await startProxy(reg.host);
    const viaProxy = new RegistryClient(new Transport({ retry: { attempts: 1 } }));
    try {
      const repo = { registry: reg.host, repository: "lib/resume" };
      assert.equal(await direct.uploadBlob(repo, d, () => [big]), "uploaded");
      proxy.faults.push({ method: "GET", path: /\/blobs\/sha256:/, times: 1, kind: "truncate" });
      const out: Uint8Array[] = [];
      for await (const c of viaProxy.blob({ registry: proxy.host, repository: "lib/resume" }, d)) out.push(c);
      assert.ok(Buffer.concat(out).equals(big));
      const gets = proxy.log.filter((l) => l.method === "GET" && /\/blobs\//.test(l.path));
      assert.equal(gets.length, 2);
      assert.match(gets[1]!.range ?? "", /^bytes=[1-9]\d*-$/, "the second request asks only for the rest");
    } finally {
      await direct.transport.close();
      await viaProxy.transport.close();
      await proxy.stop();
    }
  });

  it("refuses to upload bytes that do not match the digest, committing nothing", async () => {
    const client = new RegistryClient(new Transport({ retry: { attempts: 1 } }));
    try {
      const repo = { registry: reg.host, repository: "lib/bad" };
      const wrong = Buffer.from(blob);
      wrong[10] = (wrong[10] ?? 0) ^ 1;
      await assert.rejects(
        client.uploadBlob(repo, desc, () => [wrong]),
        /DIGEST_INVALID|read as sha256/,
      );
      assert.equal(await client.blobExists(repo, desc), false);
    } finally {
      await client.transport.close();
    }
  });

  it("takes credentials from a docker-credential helper named in credHelpers", async () => {
    const dir = path.join(work, "helper");
    await mkdir(path.join(dir, "bin"), { recursive: true });
    // A helper speaking docker's protocol: `get` reads the server URL on stdin, prints JSON.
    const helper = path.join(dir, "bin", "docker-credential-polyarchtest");
    await writeFile(
      helper,
      `#!/bin/sh\nread server\nif [ "$1" = get ] && [ "$server" = "example.test:5000" ]; then\n  printf '{"ServerURL":"%s","Username":"robot","Secret":"from-helper"}' "$server"; exit 0\nfi\necho "credentials not found in native keychain"; exit 1\n`,
    );
    await chmod(helper, 0o755);
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({
        credHelpers: { "example.test:5000": "polyarchtest" },
        auths: { "other.test": { auth: Buffer.from("u:p").toString("base64") } },
      }),
    );
    const oldPath = process.env["PATH"];
    process.env["PATH"] = `${path.join(dir, "bin")}:${oldPath}`;
    try {
      const creds = new DockerConfigCredentials({ configFile: path.join(dir, "config.json") });
      assert.deepEqual(await creds.get("example.test:5000"), { username: "robot", password: "from-helper" });
      assert.deepEqual(await creds.get("other.test"), { username: "u", password: "p" });
      assert.equal(await creds.get("nowhere.test"), undefined);
      await writeFile(
        path.join(dir, "config.json"),
        JSON.stringify({ credHelpers: { "example.test:5000": "missing-helper" } }),
      );
      await assert.rejects(
        creds.get("example.test:5000"),
        /docker-credential-missing-helper for example\.test:5000 could not be run/,
      );
    } finally {
      process.env["PATH"] = oldPath;
    }
  });

  it("a corrupted blob on the way is refused and leaves nothing in the layout", async () => {
    const src = path.join(work, "src-layout");
    const r = await polyarch(
      ["build", path.join(process.cwd(), "examples", "hello"), "-p", "linux/amd64", "-o", `oci:${src}`],
      { env: { POLYARCH_CACHE_DIR: path.join(work, "cache") } },
    );
    assert.equal(r.code, 0, r.stderr);
    const push = await polyarch(["push", `oci:${src}:latest`, `${reg.host}/lib/hello:v1`], { env: {} });
    assert.equal(push.code, 0, push.stderr);
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "GET", path: /\/blobs\/sha256:/, times: 100, kind: "flip" });
      const out = path.join(work, "dst-layout");
      const c = await polyarch(["copy", `${proxy.host}/lib/hello:v1`, `oci:${out}`], {
        env: { POLYARCH_RETRY_DELAYS_MS: "1,1" },
      });
      assert.equal(c.code, 1);
      assert.match(
        c.stderr,
        /digest mismatch for blob sha256:[a-f0-9]{64} from 127\.0\.0\.1:\d+: want sha256:[a-f0-9]{64}, got sha256:[a-f0-9]{64}/,
      );
      await assert.rejects(readdir(out), "a new layout that failed is removed entirely");
    } finally {
      await proxy.stop();
    }
  });
});

describe("upload chunking", () => {
  it("cuts a stream into fixed blocks whatever the incoming chunks", async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 251));
    const cut = async (sizes: number[]) => {
      const out: Buffer[] = [];
      for await (const b of fixedBlocks(pieces(data, sizes), 4096)) out.push(Buffer.from(b));
      assert.deepEqual(Buffer.concat(out), data);
      return out.map((b) => b.byteLength);
    };
    assert.deepEqual(await cut([1]), [4096, 4096, 1808]);
    assert.deepEqual(await cut([9999, 1]), [4096, 4096, 1808]);
    assert.deepEqual(await cut([5000]), [4096, 4096, 1808]);
  });
});
