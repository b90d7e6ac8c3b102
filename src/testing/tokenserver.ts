/**
 * A token issuer for Distribution's `auth.token` mode, for tests: it checks Basic credentials,
 * grants the requested repository actions (anonymous users may only pull `public/…`), and
 * signs ES256 JWTs whose `kid` is the libtrust key ID of the certificate the registry trusts.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { selfSignedCert } from "./tools.js";

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
  requests: { user: string | undefined; scopes: string[] }[];
  stop(): Promise<void>;
}

/** libtrust's key ID: base32 of the first 240 bits of sha256(DER public key), in groups of four. */
export function libtrustKeyId(spkiDer: Buffer): string {
  const hash = createHash("sha256").update(spkiDer).digest().subarray(0, 30);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(":");
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

export async function startTokenServer(dir: string, users: Record<string, string>): Promise<TokenServer> {
  const { keyFile, certFile } = await selfSignedCert(dir, "token");
  const key = createPrivateKey(await readFile(keyFile));
  const kid = libtrustKeyId(createPublicKey(key).export({ type: "spki", format: "der" }));
  const service = "polyarch-test";
  const issuer = "polyarch-test-issuer";
  const requests: TokenServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    let user: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith("Basic ")) {
      const [u, p] = Buffer.from(auth.slice(6), "base64").toString().split(/:(.*)/s);
      if (!u || users[u] !== p) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ details: "bad credentials" }));
        return;
      }
      user = u;
    }
    const scopes = url.searchParams.getAll("scope");
    requests.push({ user, scopes });
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(":");
      if (type !== "repository" || !name || !actions) return [];
      const wanted = actions.split(",");
      const granted = user ? wanted : name.startsWith("public/") ? wanted.filter((a) => a === "pull") : [];
      return granted.length ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: "JWT", alg: "ES256", kid }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: user ?? "",
        aud: service,
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: randomUUID(),
        access,
      }),
    );
    const sig = sign("sha256", Buffer.from(`${header}.${claims}`), { key, dsaEncoding: "ieee-p1363" });
    const token = `${header}.${claims}.${b64url(sig)}`;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: certFile,
    requests,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
