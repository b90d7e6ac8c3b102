import assert from "node:assert/strict";
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
});
