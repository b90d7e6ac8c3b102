/**
 * HTTP/1.1 with connection reuse on Node's own http/https and keep-alive agents. undici was
 * used first; its import alone cost ~130 ms per run, a sixth of copying a six-platform image.
 * Redirects are never followed here (the transport does it, to control credentials).
 */
import http, { type IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { abortError, onAbort } from "../util/abort.js";

export type ResponseBody = Readable & { dump(): Promise<void> };

export interface HttpResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

export interface HttpOptions {
  method: string;
  headers: Record<string, string>;
  body?: Uint8Array | AsyncIterable<Uint8Array>;
  signal?: AbortSignal;
  /** Idle time without bytes, in either direction, before the request fails (ETIMEDOUT). */
  idleTimeoutMs?: number;
  /**
   * The address to connect to, already checked by the caller: the host name is not looked
   * up again, so a second DNS answer cannot move the connection elsewhere (DNS rebinding).
   */
  address?: ResolvedAddress;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** What the transport needs from HTTP; tests inject a scripted one. */
export interface HttpLike {
  request(url: string | URL, opts: HttpOptions): Promise<HttpResponse>;
  close(): void;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | { address: string; family: number }[],
  family?: number,
) => void;

/** A dns.lookup stand-in that answers with the one address the caller checked. */
function pinnedLookup(a: ResolvedAddress) {
  return (_host: string, options: { all?: boolean }, cb: LookupCallback): void => {
    if (options.all) cb(null, [{ address: a.address, family: a.family }]);
    else cb(null, a.address, a.family);
  };
}

/**
 * The request body's source failed (a blob being copied from elsewhere): the error is that
 * source's, not this connection's, and is reported and retried as such (issue 8).
 */
export class BodySourceError extends Error {
  constructor(readonly source: unknown) {
    super(source instanceof Error ? source.message : String(source));
    this.name = "BodySourceError";
  }
}

export class HttpClient implements HttpLike {
  readonly #http = new http.Agent({ keepAlive: true, maxSockets: 16 });
  readonly #https = new https.Agent({ keepAlive: true, maxSockets: 16 });

  request(url: string | URL, opts: HttpOptions): Promise<HttpResponse> {
    const u = typeof url === "string" ? new URL(url) : url;
    const mod = u.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(u, {
        method: opts.method,
        headers: opts.headers,
        agent: u.protocol === "https:" ? this.#https : this.#http,
        ...(opts.address ? { lookup: pinnedLookup(opts.address) } : {}),
      });
      const idle = opts.idleTimeoutMs ?? 60_000;
      req.setTimeout(idle, () =>
        req.destroy(Object.assign(new Error(`no data for ${idle / 1000} s`), { code: "ETIMEDOUT" })),
      );
      // The signal is watched through one shared listener (util/abort.ts), not one per request.
      const signal = opts.signal;
      if (signal?.aborted) {
        req.destroy(abortError(signal));
      } else if (signal) {
        const off = onAbort(signal, () => req.destroy(abortError(signal)));
        req.once("close", off);
      }
      req.on("error", reject);
      req.on("response", (res) => {
        const body = res as unknown as ResponseBody;
        body.dump = () =>
          new Promise<void>((done) => {
            if (res.readableEnded || res.destroyed) return done();
            res.on("end", done);
            res.on("close", done);
            res.on("error", () => done());
            res.resume();
          });
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body });
      });
      if (opts.body === undefined) {
        req.end();
      } else if (opts.body instanceof Uint8Array) {
        req.end(opts.body);
      } else {
        const src = Readable.from(opts.body);
        src.on("error", (e) => {
          const err = new BodySourceError(e);
          reject(err);
          req.destroy(err);
        });
        src.pipe(req);
      }
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }
}
