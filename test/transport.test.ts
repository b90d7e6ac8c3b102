import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { parseChallenge } from "../src/registry/_challenge.js";
import { configKeys } from "../src/registry/credentials.js";
import { redactUrl } from "../src/registry/errors.js";
import { Transport } from "../src/registry/transport.js";

describe("registry transport rules", () => {
  it("parses WWW-Authenticate challenges, quoted commas and escapes included", () => {
    assert.deepEqual(
      parseChallenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.example/token",
          service: "registry.example",
          scope: "repository:a/b:pull,push",
        },
      },
    );
    assert.deepEqual(parseChallenge('Basic realm="say \\"hi\\""'), {
      scheme: "basic",
      params: { realm: 'say "hi"' },
    });
    assert.equal(parseChallenge(""), undefined);
  });

  it("speaks plain HTTP only to loopback and registries named insecure", () => {
    const t = new Transport({ insecure: ["build.internal:5000"] });
    assert.equal(t.baseUrl("localhost:5000"), "http://localhost:5000");
    assert.equal(t.baseUrl("127.0.0.1:40000"), "http://127.0.0.1:40000");
    assert.equal(t.baseUrl("[::1]:5000"), "http://[::1]:5000");
    assert.equal(t.baseUrl("build.internal:5000"), "http://build.internal:5000");
    assert.equal(t.baseUrl("ghcr.io"), "https://ghcr.io");
    assert.equal(t.baseUrl("10.0.0.5:5000"), "https://10.0.0.5:5000");
    assert.equal(t.baseUrl("docker.io"), "https://registry-1.docker.io");
  });

  it("looks Docker Hub up under its historical config key", () => {
    assert.equal(configKeys("docker.io")[0], "https://index.docker.io/v1/");
    assert.deepEqual(configKeys("ghcr.io").slice(0, 2), ["ghcr.io", "https://ghcr.io"]);
  });

  it("keeps secrets and upload state out of URLs in messages", () => {
    assert.equal(
      redactUrl("https://user:pw@reg.example/v2/a/blobs/uploads/x?_state=abc&digest=sha256:1"),
      "https://reg.example/v2/a/blobs/uploads/x?…",
    );
  });

  it("a request whose 401 comes back after a concurrent one's token arrived uses that token: one token fetch", async () => {
    let issued = 0;
    let aServed!: () => void;
    const aDone = new Promise<void>((r) => (aServed = r));
    const server = createServer((req, res) => {
      const url = req.url ?? "";
      if (url.startsWith("/token")) {
        issued++;
        res.setHeader("content-type", "application/json");
        return void res.end(JSON.stringify({ token: `tok-${issued}` }));
      }
      const ok = req.headers.authorization === "Bearer tok-1";
      const answer = () => {
        if (ok) return void res.writeHead(200).end("{}");
        res
          .writeHead(401, {
            "www-authenticate": `Bearer realm="http://127.0.0.1:${port}/token",service="t",scope="repository:x:pull"`,
          })
          .end();
      };
      if (url.endsWith("/a")) {
        if (ok) aServed();
        return answer();
      }
      // b's first, unauthorized answer is held until a has its token and its answer.
      if (!ok) return void aDone.then(answer);
      answer();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const t = new Transport({ retry: { attempts: 1 } });
    try {
      const get = (ref: string) =>
        t.request({
          method: "GET",
          registry: `127.0.0.1:${port}`,
          path: `/v2/x/manifests/${ref}`,
          scopes: ["repository:x:pull"],
          expect: [200],
        });
      const [a, b] = await Promise.all([get("a"), get("b")]);
      await Promise.all([a.body.dump(), b.body.dump()]);
      assert.deepEqual([a.status, b.status], [200, 200]);
      assert.equal(issued, 1, "one token for both");
    } finally {
      await t.close();
      server.close();
    }
  });
});
