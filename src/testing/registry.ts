/**
 * The real CNCF Distribution registry (Debian's docker-registry) as a child process on
 * 127.0.0.1, with a temporary storage directory: open, with htpasswd basic auth, or with token
 * auth against an issuer the test runs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { freePort } from "./tools.js";

export interface RunningRegistry {
  /** host:port, e.g. 127.0.0.1:40123 */
  host: string;
  url: string;
  dir: string;
  log: () => string;
  stop(): Promise<void>;
}

export type RegistryAuth =
  | { kind: "none" }
  | { kind: "htpasswd"; file: string }
  | { kind: "token"; realm: string; service: string; issuer: string; rootCertBundle: string };

export async function startRegistry(auth: RegistryAuth = { kind: "none" }): Promise<RunningRegistry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "polyarch-registry-"));
  const port = await freePort();
  const authYaml =
    auth.kind === "htpasswd"
      ? `auth:\n  htpasswd:\n    realm: polyarch-test\n    path: ${auth.file}\n`
      : auth.kind === "token"
        ? `auth:\n  token:\n    realm: ${auth.realm}\n    service: ${auth.service}\n    issuer: ${auth.issuer}\n    rootcertbundle: ${auth.rootCertBundle}\n`
        : "";
  const config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${path.join(dir, "data")}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
${authYaml}`;
  const cfg = path.join(dir, "config.yml");
  await writeFile(cfg, config);
  const child: ChildProcess = spawn("/usr/bin/docker-registry", ["serve", cfg], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${out}`);
    try {
      const r = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200 || r.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`docker-registry did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    url,
    dir,
    log: () => out,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
