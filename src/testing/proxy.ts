/**
 * An HTTP proxy for fault injection in front of the real registry: it counts requests and
 * uploaded bytes, and can reset connections, answer 500/429 (with Retry-After), truncate or
 * flip response bytes, for requests that match a rule. Listens on 127.0.0.1 only.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Fault {
  /** Which requests: method and a path pattern. */
  method?: string;
  path: RegExp;
  /** How many matching requests to spoil (then the rest pass). */
  times: number;
  kind: "reset" | "500" | "429" | "truncate" | "flip" | "oversize";
  retryAfter?: number;
}

export interface ProxyLog {
  method: string;
  path: string;
  status: number;
  bytesIn: number;
  range?: string;
}

export interface FaultProxy {
  host: string;
  log: ProxyLog[];
  faults: Fault[];
  /**
   * Changes response headers before they go out, e.g. a hostile upload Location or Link that
   * points at another host (tests of where credentials may go).
   */
  rewriteHeaders?: (headers: http.OutgoingHttpHeaders, req: { method: string; path: string }) => void;
  /** Bytes of request bodies sent to blob upload endpoints. */
  uploadedBytes(): number;
  stop(): Promise<void>;
}

export async function startProxy(targetHost: string): Promise<FaultProxy> {
  const log: ProxyLog[] = [];
  const faults: Fault[] = [];
  const server = http.createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const fault = faults.find((f) => f.times > 0 && (!f.method || f.method === method) && f.path.test(path));
    if (fault) fault.times--;
    const entry: ProxyLog = {
      method,
      path,
      status: 0,
      bytesIn: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
    };
    log.push(entry);
    if (fault?.kind === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "500" || fault?.kind === "429") {
      req.resume();
      entry.status = Number(fault.kind);
      res.writeHead(entry.status, {
        "content-type": "application/json",
        ...(fault.retryAfter !== undefined ? { "retry-after": String(fault.retryAfter) } : {}),
      });
      res.end(
        JSON.stringify({
          errors: [{ code: fault.kind === "429" ? "TOOMANYREQUESTS" : "UNKNOWN", message: "injected" }],
        }),
      );
      return;
    }
    const upstream = http.request(
      {
        host: targetHost.split(":")[0],
        port: Number(targetHost.split(":")[1]),
        method,
        path,
        headers: { ...req.headers, host: targetHost },
      },
      (up) => {
        entry.status = up.statusCode ?? 0;
        const headers = { ...up.headers };
        // Locations point at the registry itself: keep clients on the proxy.
        if (typeof headers.location === "string")
          headers.location = headers.location.replace(`//${targetHost}`, `//${proxyHost}`);
        proxy.rewriteHeaders?.(headers, { method, path });
        if (fault?.kind === "oversize") {
          up.resume();
          const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
          res.writeHead(200, {
            "content-type": headers["content-type"] ?? "application/vnd.oci.image.index.v1+json",
            "content-length": String(big.length),
          });
          res.end(big);
          return;
        }
        if (fault?.kind === "truncate" || fault?.kind === "flip") {
          const chunks: Buffer[] = [];
          up.on("data", (c: Buffer) => chunks.push(c));
          up.on("end", () => {
            let body = Buffer.concat(chunks);
            if (fault.kind === "flip" && body.length > 0) {
              body = Buffer.from(body);
              body[Math.floor(body.length / 2)]! ^= 0xff;
              res.writeHead(up.statusCode ?? 200, headers);
              res.end(body);
            } else {
              // Declare the full length, send half, then cut the connection.
              res.writeHead(up.statusCode ?? 200, headers);
              // Cut only after the first half has left, so the client sees headers and a short body.
              res.write(body.subarray(0, Math.floor(body.length / 2)), () =>
                setTimeout(() => res.socket?.destroy(), 20),
              );
            }
          });
          return;
        }
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.on("data", (c: Buffer) => (entry.bytesIn += c.length));
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const proxyHost = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const proxy: FaultProxy = {
    host: proxyHost,
    log,
    faults,
    uploadedBytes: () =>
      log
        .filter((l) => /\/blobs\/uploads\//.test(l.path) && (l.method === "PATCH" || l.method === "PUT"))
        .reduce((n, l) => n + l.bytesIn, 0),
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return proxy;
}
