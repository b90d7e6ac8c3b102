/**
 * Security regressions named by attack (reliability.md REG-16…18, issue 8), against a scripted
 * HTTP layer and an injected resolver: what the transport sends, to whom, and to which
 * address. Nothing here opens a socket; "public" hosts are names the resolver maps to
 * documentation addresses (203.0.113.0/24), "private" ones to private addresses.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  HttpClient,
  type HttpLike,
  type HttpOptions,
  type HttpResponse,
  type ResponseBody,
} from "../src/registry/_http.js";
import { getEventListeners } from "node:events";
import { RegistryClient, Transport } from "../src/registry/index.js";
import { DEFAULT_RETRY, type Resolver, type TransportOptions } from "../src/registry/transport.js";
import { sha256 } from "../src/digest/index.js";

interface Sent {
  url: string;
  method: string;
  authorization: string | undefined;
  address: string | undefined;
}

/** The stand-in DNS: public names on TEST-NET-3, hostile names on loopback and private ranges. */
const NAMES: Record<string, string[]> = {
  "registry.example": ["203.0.113.10"],
  "auth.example": ["203.0.113.11"],
  "storage.example": ["203.0.113.12"],
  "evil-loopback.example": ["127.0.0.1"],
  "evil-mixed.example": ["203.0.113.13", "10.0.0.5"],
  "evil-metadata.example": ["::ffff:169.254.169.254"],
  localhost: ["127.0.0.1", "::1"],
};
function resolver(calls: string[] = []): Resolver {
  return async (host) => {
    calls.push(host);
    const a = NAMES[host];
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return a.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }) as const);
  };
}
const transport = (http: HttpLike, extra: Partial<TransportOptions> = {}) =>
  new Transport({ http, credentials: creds, retry: { attempts: 1 }, resolve: resolver(), ...extra });

/** Answers requests from a script of (url pattern → response) rules and records what was sent. */
function scripted(
  rules: [
    RegExp,
    (url: URL) => { status: number; headers?: Record<string, string>; body?: string | Buffer },
  ][],
): HttpLike & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    close() {},
    async request(url: string | URL, opts: HttpOptions): Promise<HttpResponse> {
      const u = new URL(url.toString());
      sent.push({
        url: u.toString(),
        method: opts.method,
        authorization: opts.headers["authorization"],
        address: opts.address?.address,
      });
      const rule = rules.find(([re]) => re.test(u.toString()));
      if (!rule)
        throw Object.assign(new Error(`unexpected request ${u.toString()}`), { code: "ECONNREFUSED" });
      const r = rule[1](u);
      const body = Readable.from(
        r.body === undefined ? [] : [Buffer.from(r.body)],
      ) as unknown as ResponseBody;
      body.dump = async () => {
        body.resume();
      };
      return {
        statusCode: r.status,
        headers: Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
        body,
      };
    },
  };
}

const creds = { get: async () => ({ username: "robot", password: "secret-pw" }) };
const req = (t: Transport) =>
  t.request({
    method: "GET",
    registry: "registry.example",
    path: "/v2/acme/app/manifests/v1",
    scopes: ["repository:acme/app:pull"],
    expect: [200],
  });

/** The names of the process warnings emitted while `fn` runs (and the turn after it). */
async function warningsDuring(fn: () => Promise<unknown>): Promise<string[]> {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on("warning", onWarning);
  try {
    await fn();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", onWarning);
  }
  return warnings;
}

describe("security regressions", () => {
  it("TokenRealmOverPlainHTTP: an https registry's http realm is refused and no credentials go out", async () => {
    const http = scripted([
      [
        /\/v2\//,
        () => ({
          status: 401,
          headers: { "www-authenticate": 'Bearer realm="http://registry.example/token",service="r"' },
        }),
      ],
    ]);
    await assert.rejects(req(transport(http)), /token realm over plain HTTP/);
    assert.ok(http.sent.every((s) => s.authorization === undefined));
    assert.ok(!http.sent.some((s) => s.url.startsWith("http://")));
  });

  it("TokenServerRedirectSSRF: a realm on a private or metadata address is refused", async () => {
    for (const realm of [
      "https://169.254.169.254/latest/meta-data",
      "https://10.0.0.7/token",
      "https://127.0.0.1/token",
      "https://[::1]/token",
      // The spellings the first sweep got through (issue 8), and their relatives:
      "http://[::ffff:127.0.0.1]:5000/token",
      "https://[::ffff:169.254.169.254]/latest",
      "https://[::ffff:a9fe:a9fe]/latest",
      "https://[64:ff9b::a9fe:a9fe]/latest",
      "https://[::127.0.0.1]/token",
      "https://[fd00::1]/token",
      "https://[fe80::1]/token",
      "https://[::]/token",
      "https://2130706433/token",
      "https://0x7f000001/token",
      "https://0177.0.0.1/token",
      "https://0.0.0.0/token",
      "https://100.64.0.1/token",
      "https://172.20.0.1/token",
      "https://evil-loopback.example/token",
      "https://evil-mixed.example/token",
      "https://evil-metadata.example/token",
      "https://localhost/token",
    ]) {
      const http = scripted([
        [
          /registry\.example/,
          () => ({ status: 401, headers: { "www-authenticate": `Bearer realm="${realm}",service="r"` } }),
        ],
      ]);
      await assert.rejects(req(transport(http)), /SSRF protection/, realm);
      assert.equal(http.sent.length, 1, `nothing was sent to ${realm}`);
    }
  });

  it("BearerTokenNotLeakedOnCrossHostRedirect: a blob redirect to storage carries no registry credentials", async () => {
    const blob = Buffer.from("layer bytes");
    const digest = sha256(blob);
    const http = scripted([
      [
        /^https:\/\/auth\.example\/token/,
        () => ({ status: 200, body: JSON.stringify({ token: "tok-123", expires_in: 300 }) }),
      ],
      [
        /^https:\/\/registry\.example\/v2\/acme\/app\/blobs\//,
        () => ({
          status: 307,
          headers: { location: "https://storage.example/bucket/blob?X-Amz-Signature=abc" },
        }),
      ],
      [
        /^https:\/\/storage\.example\//,
        () => ({ status: 200, headers: { "content-length": String(blob.length) }, body: blob }),
      ],
    ]);
    // First a 401 with a challenge, then the token; script the registry's 401 by wrapping.
    let challenged = false;
    const wrapped: HttpLike = {
      close() {},
      async request(url, opts) {
        if (!challenged && url.toString().startsWith("https://registry.example/")) {
          challenged = true;
          http.sent.push({
            url: url.toString(),
            method: opts.method,
            authorization: opts.headers["authorization"],
            address: opts.address?.address,
          });
          const body = Readable.from([]) as unknown as ResponseBody;
          body.dump = async () => {};
          return {
            statusCode: 401,
            headers: {
              "www-authenticate": 'Bearer realm="https://auth.example/token",service="registry.example"',
            },
            body,
          };
        }
        return http.request(url, opts);
      },
    };
    const client = new RegistryClient(transport(wrapped));
    const out: Uint8Array[] = [];
    for await (const c of client.blob(
      { registry: "registry.example", repository: "acme/app" },
      { digest, size: blob.length },
    ))
      out.push(c);
    assert.deepEqual(Buffer.concat(out), blob);
    const toRegistry = http.sent.filter((s) => s.url.startsWith("https://registry.example/"));
    const toStorage = http.sent.filter((s) => s.url.startsWith("https://storage.example/"));
    assert.equal(toRegistry.at(-1)!.authorization, "Bearer tok-123");
    assert.equal(toStorage.length, 1);
    assert.equal(toStorage[0]!.authorization, undefined, "no Authorization to another host");
    assert.equal(toStorage[0]!.address, "203.0.113.12", "connected to the address that was checked");
    const toAuth = http.sent.find((s) => s.url.startsWith("https://auth.example/"))!;
    assert.match(toAuth.authorization ?? "", /^Basic /, "credentials only go to the token realm");
  });

  it("RedirectToPrivateAddress: a public registry's redirect into a private network is refused", async () => {
    const http = scripted([
      [/registry\.example/, () => ({ status: 307, headers: { location: "https://192.168.1.10/internal" } })],
    ]);
    await assert.rejects(
      req(transport(http)),
      /SSRF protection: registry\.example sent a redirect on a private address \(https:\/\/192\.168\.1\.10\)/,
    );
    assert.equal(http.sent.length, 1);
  });

  it("SecretsStayOutOfErrors: a refused login names registry and scope, never the password", async () => {
    const http = scripted([
      [
        /registry\.example/,
        () => ({
          status: 401,
          headers: { "www-authenticate": 'Bearer realm="https://auth.example/token",service="r"' },
        }),
      ],
      [/auth\.example/, () => ({ status: 401, body: "bad credentials" })],
    ]);
    const err = await req(transport(http)).catch((e: Error) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /registry\.example refused the credentials for repository:acme\/app:pull/);
    assert.doesNotMatch(`${err.message} ${JSON.stringify(err)}`, /secret-pw|robot:|cm9ib3Q6/);
  });

  it("RedirectSpellings: a redirect to any spelling of a private address is refused before it is sent", async () => {
    for (const target of [
      "https://[::ffff:127.0.0.1]/x",
      "https://2852039166/latest/meta-data",
      "https://evil-loopback.example/x",
      "https://evil-metadata.example/x",
    ]) {
      const http = scripted([[/registry\.example/, () => ({ status: 307, headers: { location: target } })]]);
      await assert.rejects(req(transport(http)), /SSRF protection/, target);
      assert.equal(http.sent.length, 1, `nothing was sent to ${target}`);
    }
  });

  it("UploadLocationSSRF: a public registry's upload Location on a private address gets nothing", async () => {
    const blob = Buffer.from("bytes");
    for (const location of ["https://10.0.0.9/upload/1", "https://evil-loopback.example/upload/1"]) {
      const http = scripted([
        [/\/blobs\/sha256:/, () => ({ status: 404 })],
        [/\/blobs\/uploads\/$/, () => ({ status: 202, headers: { location } })],
      ]);
      const client = new RegistryClient(transport(http));
      await assert.rejects(
        client.uploadBlob(
          { registry: "registry.example", repository: "acme/app" },
          { digest: sha256(blob), size: blob.length },
          () => [blob],
        ),
        /SSRF protection: registry\.example sent a URL on a/,
      );
      assert.deepEqual(
        http.sent.map((s) => s.method),
        ["HEAD", "POST"],
        "no PATCH or PUT went to the private address",
      );
    }
  });

  it("PlainHttpDowngrade: an https registry's Location or redirect to http:// is refused", async () => {
    const http = scripted([
      [/registry\.example/, () => ({ status: 302, headers: { location: "http://storage.example/b" } })],
    ]);
    await assert.rejects(req(transport(http)), /over plain HTTP \(http:\/\/storage\.example\)/);
    assert.equal(http.sent.length, 1);
  });

  it("DnsRebinding: the connection goes to the address that was checked, resolved once per hop", async () => {
    const calls: string[] = [];
    // A host's first answer is public, every later one loopback: a second lookup would be rebound.
    const rebinding: Resolver = async (host) => {
      const first = !calls.includes(host);
      calls.push(host);
      return [{ address: first ? "203.0.113.50" : "127.0.0.1", family: 4 }];
    };
    const http = scripted([
      [/registry\.example/, () => ({ status: 307, headers: { location: "https://rebind.example/blob" } })],
      [/rebind\.example/, () => ({ status: 200, body: "ok" })],
    ]);
    const res = await req(transport(http, { resolve: rebinding }));
    await res.body.dump();
    assert.deepEqual(
      calls.sort(),
      ["rebind.example", "registry.example"],
      "one lookup per host, none at connect",
    );
    assert.equal(http.sent.at(-1)!.address, "203.0.113.50", "pinned to the checked address");
  });

  it("LocalRegistry: a registry on a loopback address may use a realm and storage on loopback", async () => {
    const http = scripted([
      [
        /^http:\/\/127\.0\.0\.1:5000\/v2\//,
        () => ({
          status: 401,
          headers: {
            "www-authenticate": 'Bearer realm="http://evil-loopback.example:5001/token",service="r"',
          },
        }),
      ],
      [/evil-loopback\.example:5001\/token/, () => ({ status: 200, body: JSON.stringify({ token: "t" }) })],
    ]);
    await assert.rejects(
      transport(http).request({
        method: "GET",
        registry: "127.0.0.1:5000",
        path: "/v2/acme/app/manifests/v1",
        scopes: ["repository:acme/app:pull"],
        expect: [200],
      }),
      /refused the credentials/,
    );
    const toRealm = http.sent.find((s) => s.url.includes(":5001/token"))!;
    assert.equal(toRealm.address, "127.0.0.1", "the realm was reached, on the checked address");
    assert.equal(toRealm.authorization?.startsWith("Basic "), true, "the user's credentials go to the realm");
    const toRegistry = http.sent.filter((s) => s.url.includes(":5000/"));
    assert.equal(toRegistry.at(-1)!.authorization, "Bearer t", "the token goes to the registry");
  });

  it("RetryListeners: node's own HTTP client, 30 requests at once on one signal: no warning, no listener left, an abort ends them all", async () => {
    let held = 0;
    const server = createServer((q, res) => {
      if (q.url === "/hold") held++;
      else res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new HttpClient();
    const ac = new AbortController();
    try {
      const warnings = await warningsDuring(async () => {
        await Promise.all(
          Array.from({ length: 30 }, async () => {
            const r = await client.request(`${base}/ok`, { method: "GET", headers: {}, signal: ac.signal });
            assert.equal(r.statusCode, 200);
            await r.body.dump();
          }),
        );
        assert.equal(getEventListeners(ac.signal, "abort").length, 0, "every request let go of the signal");
        // Requests the server never answers end when the signal aborts.
        const hanging = Array.from({ length: 12 }, () =>
          client.request(`${base}/hold`, { method: "GET", headers: {}, signal: ac.signal }),
        );
        while (held < 12) await new Promise((r) => setTimeout(r, 5));
        ac.abort();
        const outcomes = await Promise.allSettled(hanging);
        assert.deepEqual(
          outcomes.map((o) => o.status),
          Array(12).fill("rejected"),
        );
      });
      assert.deepEqual(warnings, []);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("RetryListeners: many retries on one abort signal leave no listeners behind", async () => {
    const http = scripted([[/registry\.example/, () => ({ status: 503 })]]);
    const t = transport(http, { retry: { attempts: 3, delaysMs: [0, 0], sleep: DEFAULT_RETRY.sleep } });
    const ac = new AbortController();
    const warnings = await warningsDuring(() =>
      Promise.all(
        Array.from({ length: 30 }, () =>
          assert.rejects(
            t.retry("reading", () => req(t), ac.signal),
            /503/,
          ),
        ),
      ),
    );
    assert.equal(http.sent.length, 90, "3 attempts each, no more");
    assert.deepEqual(warnings, []);
    assert.equal(getEventListeners(ac.signal, "abort").length, 0);
  });
});
