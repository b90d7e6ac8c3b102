/**
 * Security regressions named by attack (reliability.md REG-16…18), against a scripted HTTP
 * layer: what the transport sends, and to whom.
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import type { HttpLike, HttpOptions, HttpResponse, ResponseBody } from "../src/registry/_http.js";
import { RegistryClient, Transport } from "../src/registry/index.js";
import { sha256 } from "../src/digest/index.js";

interface Sent {
  url: string;
  method: string;
  authorization: string | undefined;
}

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
      sent.push({ url: u.toString(), method: opts.method, authorization: opts.headers["authorization"] });
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
    await assert.rejects(
      req(new Transport({ http, credentials: creds, retry: { attempts: 1 } })),
      /token realm over plain HTTP/,
    );
    assert.ok(http.sent.every((s) => s.authorization === undefined));
    assert.ok(!http.sent.some((s) => s.url.startsWith("http://")));
  });

  it("TokenServerRedirectSSRF: a realm on a private or metadata address is refused", async () => {
    for (const realm of [
      "https://169.254.169.254/latest/meta-data",
      "https://10.0.0.7/token",
      "https://127.0.0.1/token",
      "https://[::1]/token",
    ]) {
      const http = scripted([
        [
          /registry\.example/,
          () => ({ status: 401, headers: { "www-authenticate": `Bearer realm="${realm}",service="r"` } }),
        ],
      ]);
      await assert.rejects(
        req(new Transport({ http, credentials: creds, retry: { attempts: 1 } })),
        /SSRF protection/,
        realm,
      );
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
    const client = new RegistryClient(
      new Transport({ http: wrapped, credentials: creds, retry: { attempts: 1 } }),
    );
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
    const toAuth = http.sent.find((s) => s.url.startsWith("https://auth.example/"))!;
    assert.match(toAuth.authorization ?? "", /^Basic /, "credentials only go to the token realm");
  });

  it("RedirectToPrivateAddress: a public registry's redirect into a private network is refused", async () => {
    const http = scripted([
      [/registry\.example/, () => ({ status: 307, headers: { location: "https://192.168.1.10/internal" } })],
    ]);
    await assert.rejects(
      req(new Transport({ http, retry: { attempts: 1 } })),
      /SSRF protection: registry\.example redirected to a private address/,
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
    const err = await req(new Transport({ http, credentials: creds, retry: { attempts: 1 } })).catch(
      (e: Error) => e,
    );
    assert.ok(err instanceof Error);
    assert.match(err.message, /registry\.example refused the credentials for repository:acme\/app:pull/);
    assert.doesNotMatch(`${err.message} ${JSON.stringify(err)}`, /secret-pw|robot:|cm9ib3Q6/);
  });
});
