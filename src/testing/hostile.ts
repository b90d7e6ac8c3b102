/**
 * A scripted HTTP server on 127.0.0.1 for the misbehaviour a real registry cannot show on
 * purpose: it records every request (with its Authorization header) and answers from a
 * handler. Used as a bait host that a hostile registry points clients at.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | undefined;
}

export interface HostileServer {
  host: string;
  origin: string;
  requests: SeenRequest[];
  stop(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Asks for Basic credentials on every request: a bait for clients that would send them. */
export const askForCredentials: Handler = (_req, res) => {
  res.writeHead(401, { "www-authenticate": 'Basic realm="bait"', "content-type": "application/json" });
  res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "send me your password" }] }));
};

export async function startHostile(handler: Handler = askForCredentials): Promise<HostileServer> {
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    requests.push({
      method: req.method ?? "GET",
      path: req.url ?? "/",
      authorization: req.headers.authorization,
    });
    req.resume();
    req.on("end", () => handler(req, res));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    origin: `http://${host}`,
    requests,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
