/**
 * A private Go module proxy on loopback for tests: it serves the GOPROXY protocol
 * (`<module>/@v/list`, `.info`, `.mod`, `.zip`) for modules given as files, over HTTPS with a
 * certificate made here (the go command sends .netrc credentials over HTTPS only), and only to
 * a request carrying the expected basic credentials (as a company's Athens or Artifactory would).
 */
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import { crc32 } from "node:zlib";
import { selfSignedCert } from "./tools.js";

export interface ProxyModule {
  path: string;
  version: string;
  /** Files by path inside the module (go.mod among them). */
  files: Record<string, string>;
}

/** A zip with stored (uncompressed) entries: what the go command accepts as a module zip. */
export function storedZip(entries: { name: string; data: Buffer }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const crc = crc32(e.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(e.data.length, 20);
    central.writeUInt32LE(e.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, e.data);
    centrals.push(central, name);
    offset += local.length + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

export interface PrivateProxy {
  url: string;
  /** host:port, as a .netrc `machine` line names it for the go command. */
  host: string;
  /** The proxy's certificate: SSL_CERT_FILE for the go command. */
  caFile: string;
  /** Every request: its path and whether it carried the right credentials. */
  requests: { url: string; authorized: boolean }[];
  close(): Promise<void>;
}

export async function startPrivateProxy(
  dir: string,
  modules: ProxyModule[],
  credentials: { user: string; password: string },
): Promise<PrivateProxy> {
  const { keyFile, certFile: caFile } = await selfSignedCert(dir, "goproxy", "127.0.0.1");
  const want = `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString("base64")}`;
  const requests: PrivateProxy["requests"] = [];
  const time = "2026-01-01T00:00:00Z";
  const tls = { key: await readFile(keyFile), cert: await readFile(caFile) };
  const server: Server = createServer(tls, (req, res) => {
    const url = req.url ?? "/";
    const authorized = req.headers.authorization === want;
    requests.push({ url, authorized });
    if (!authorized) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="modules"' }).end("unauthorized\n");
      return;
    }
    for (const m of modules) {
      const prefix = `/${m.path}/@v/`;
      if (!url.startsWith(prefix)) continue;
      const file = url.slice(prefix.length);
      if (file === "list") return void res.end(`${m.version}\n`);
      if (file === `${m.version}.info`)
        return void res.end(JSON.stringify({ Version: m.version, Time: time }));
      if (file === `${m.version}.mod`) return void res.end(m.files["go.mod"] ?? `module ${m.path}\n`);
      if (file === `${m.version}.zip`)
        return void res.end(
          storedZip(
            Object.entries(m.files).map(([name, text]) => ({
              name: `${m.path}@${m.version}/${name}`,
              data: Buffer.from(text),
            })),
          ),
        );
    }
    res.writeHead(404).end("not found\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    caFile,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
