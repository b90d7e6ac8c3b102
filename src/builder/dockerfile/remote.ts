/**
 * ADD of an http(s) URL, natively (issue 9 §1): the file is downloaded into the build's spool
 * as BuildKit's HTTP source does it — named after the URL path's last part (`__unnamed__`
 * when there is none), mode 0600, owned by root, never unpacked — and checked against
 * `--checksum` when one is given, before any layer is written.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { PolyarchError } from "../../errors.js";
import { HttpClient } from "../../registry/_http.js";
import type { SourceFs } from "./context.js";
import type { Node } from "./tree.js";

const MAX_REDIRECTS = 10;
const ALGORITHMS: Record<string, string> = { sha256: "sha256", sha384: "sha384", sha512: "sha512" };

/** True for the sources ADD fetches over HTTP. */
export function isHttpSource(src: string): boolean {
  return /^https?:\/\//i.test(src);
}

/** The name BuildKit gives a downloaded file: the URL path's last part. */
export function urlFilename(src: string): string {
  const p = new URL(src).pathname;
  const base = path.posix.basename(p);
  return p === "" || p === "/" || base === "" || base === "." ? "__unnamed__" : decodeURIComponent(base);
}

/** Checks a --checksum value: `<algorithm>:<hex>` with sha256, sha384 or sha512. */
export function parseChecksum(value: string): { algorithm: string; hex: string } | undefined {
  const m = /^(sha256|sha384|sha512):([a-f0-9]+)$/.exec(value);
  if (!m) return undefined;
  const len = { sha256: 64, sha384: 96, sha512: 128 }[m[1] as "sha256" | "sha384" | "sha512"];
  return m[2]!.length === len ? { algorithm: m[1]!, hex: m[2]! } : undefined;
}

/**
 * Downloads `url` to `file`, following redirects; fails with one sentence on a status other
 * than 200, a network error or a checksum that does not match (the file is then removed).
 */
export async function download(
  url: string,
  file: string,
  opts: { checksum?: { algorithm: string; hex: string }; what: string; signal?: AbortSignal },
): Promise<void> {
  const client = new HttpClient();
  const fail = (message: string, hint: string, cause?: unknown) =>
    new PolyarchError({
      code: "E_INPUT",
      message: `${opts.what}: ${message}`,
      hint,
      ...(cause ? { cause } : {}),
    });
  try {
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      let res;
      try {
        res = await client.request(current, {
          method: "GET",
          headers: { "user-agent": "polyarch" },
          idleTimeoutMs: 60_000,
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      } catch (e) {
        throw fail(
          `cannot fetch ${redact(current)}: ${(e as Error).message}`,
          "Check the URL and the network.",
          e,
        );
      }
      const location = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && location) {
        await res.body.dump();
        if (hop >= MAX_REDIRECTS)
          throw fail(`${redact(new URL(url))} redirects more than ${MAX_REDIRECTS} times`, "Check the URL.");
        const next = new URL(location, current);
        if (!/^https?:$/.test(next.protocol))
          throw fail(`${redact(current)} redirects to ${next.protocol}`, "Use an http(s) URL.");
        current = next;
        continue;
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw fail(
          `${redact(current)} answered HTTP ${res.statusCode}`,
          "Check the URL; ADD needs it to answer 200.",
        );
      }
      const hash = createHash(ALGORITHMS[opts.checksum?.algorithm ?? "sha256"]!);
      const tee = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(res.body, tee, createWriteStream(file));
      } catch (e) {
        await rm(file, { force: true });
        throw fail(
          `the download of ${redact(current)} broke off: ${(e as Error).message}`,
          "Build again.",
          e,
        );
      }
      const got = hash.digest("hex");
      if (opts.checksum && got !== opts.checksum.hex) {
        await rm(file, { force: true });
        throw fail(
          `${redact(new URL(url))} has checksum ${opts.checksum.algorithm}:${got}, not ${opts.checksum.algorithm}:${opts.checksum.hex}`,
          "The file changed, or --checksum is wrong; nothing was written.",
        );
      }
      return;
    }
  } finally {
    client.close();
  }
}

/** A URL without its user info or query (either may hold a secret). */
function redact(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** Downloaded files as a source for COPY's rules: each a root-owned file of mode 0600. */
export class DownloadFs implements SourceFs {
  readonly #files: Map<string, string>;
  constructor(files: Map<string, string>) {
    this.#files = files;
  }
  async stat(rel: string): Promise<Node | undefined> {
    const file = this.#files.get(rel);
    if (rel === "") return { type: "dir", mode: 0o755, uid: 0, gid: 0 };
    return file ? { type: "file", mode: 0o600, uid: 0, gid: 0, source: { file } } : undefined;
  }
  async list(rel: string): Promise<string[]> {
    return rel === "" ? [...this.#files.keys()].sort() : [];
  }
}
