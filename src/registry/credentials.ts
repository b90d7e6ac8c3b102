/**
 * Credentials from docker's config.json, looked up per registry the way docker does
 * (reliability.md REG-19): `credHelpers[host]` first, then `credsStore`, then `auths`.
 * Helpers are the `docker-credential-<name>` executables (get/store/erase on stdin).
 * Secrets are never logged: errors name the registry and the helper, never a value.
 */
import { spawn } from "node:child_process";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../errors.js";

export type Credential =
  { username: string; password: string } | { identityToken: string; username?: string };

export interface CredentialStore {
  get(registry: string): Promise<Credential | undefined>;
}

/** No credentials at all: every request is anonymous. */
export const anonymous: CredentialStore = { get: async () => undefined };

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

/** The keys a registry may be stored under; Docker Hub has its historical one. */
export function configKeys(registry: string): string[] {
  if (registry === "docker.io" || registry === "index.docker.io" || registry === "registry-1.docker.io") {
    return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"];
  }
  return [
    registry,
    `https://${registry}`,
    `http://${registry}`,
    `https://${registry}/v1/`,
    `https://${registry}/v2/`,
  ];
}

export type HelperRunner = (
  helper: string,
  verb: string,
  input: string,
) => Promise<{ code: number; stdout: string; stderr: string }>;

export const runHelper: HelperRunner = (helper, verb, input) =>
  new Promise((resolve, reject) => {
    const child = spawn(`docker-credential-${helper}`, [verb], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // A helper that exits without reading its input makes the write fail (EPIPE): its exit
    // status and output are what count, so that error is not an error here.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });

export class DockerConfigCredentials implements CredentialStore {
  readonly file: string;
  readonly #run: HelperRunner;
  constructor(opts: { configFile: string; runHelper?: HelperRunner }) {
    this.file = opts.configFile;
    this.#run = opts.runHelper ?? runHelper;
  }

  async #read(): Promise<DockerConfig> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return {};
      throw new PolyarchError({
        code: "E_AUTH",
        message:
          code === "EISDIR"
            ? `the docker config ${this.file} is a directory, not a file`
            : `cannot read the docker config ${this.file} (${code ?? "error"})`,
        hint: "Fix or remove it (DOCKER_CONFIG chooses the directory that holds config.json).",
        cause: e,
      });
    }
    let cfg: unknown;
    try {
      cfg = JSON.parse(text);
    } catch {
      cfg = undefined;
    }
    if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `${this.file} is not a JSON object`,
        hint: "Fix or remove the docker config file (DOCKER_CONFIG chooses its directory).",
      });
    }
    return cfg as DockerConfig;
  }

  async #fromHelper(helper: string, registry: string): Promise<Credential | undefined> {
    let r: { code: number; stdout: string; stderr: string };
    try {
      r = await this.#run(helper, "get", registry);
    } catch (e) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `credential helper docker-credential-${helper} for ${registry} could not be run`,
        hint: `Install docker-credential-${helper}, or remove it from ${this.file}.`,
        cause: e,
      });
    }
    if (r.code !== 0) {
      if (/credentials not found/i.test(r.stdout + r.stderr)) return undefined;
      throw new PolyarchError({
        code: "E_AUTH",
        message: `credential helper docker-credential-${helper} failed for ${registry} (exit ${r.code})`,
        hint: "Run the helper by hand to see why, or log in again.",
      });
    }
    // The helper's output holds the secret: a problem with it is named, its text never shown.
    let j: { Username?: unknown; Secret?: unknown } | undefined;
    try {
      const v: unknown = JSON.parse(r.stdout);
      if (typeof v === "object" && v !== null && !Array.isArray(v)) j = v;
    } catch {
      j = undefined;
    }
    if (
      !j ||
      (j.Secret !== undefined && typeof j.Secret !== "string") ||
      (j.Username !== undefined && typeof j.Username !== "string")
    ) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `credential helper docker-credential-${helper} for ${registry} printed something that is not the JSON object {"Username","Secret"} it should`,
        hint: `Run "docker-credential-${helper} get" by hand to see what it prints, or remove it from ${this.file}.`,
      });
    }
    if (!j.Secret) return undefined;
    return j.Username === "<token>"
      ? { identityToken: j.Secret }
      : { username: j.Username ?? "", password: j.Secret };
  }

  async get(registry: string): Promise<Credential | undefined> {
    const cfg = await this.#read();
    const keys = configKeys(registry);
    for (const k of keys) {
      const helper = cfg.credHelpers?.[k];
      if (helper) return this.#fromHelper(helper, k);
    }
    if (cfg.credsStore) {
      const c = await this.#fromHelper(cfg.credsStore, keys[0]!);
      if (c) return c;
    }
    for (const k of keys) {
      const a = cfg.auths?.[k];
      if (!a) continue;
      if (a.identitytoken) return { identityToken: a.identitytoken };
      if (a.username !== undefined && a.password !== undefined)
        return { username: a.username, password: a.password };
      if (a.auth) {
        const decoded = Buffer.from(a.auth, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
      }
    }
    return undefined;
  }

  /** Stores credentials as `polyarch login` / `docker login` do (helper when configured, else auths). */
  async store(registry: string, username: string, password: string): Promise<void> {
    const cfg = await this.#read();
    const key = configKeys(registry)[0]!;
    const helper = cfg.credHelpers?.[key] ?? cfg.credsStore;
    if (helper) {
      const r = await this.#run(
        helper,
        "store",
        JSON.stringify({ ServerURL: key, Username: username, Secret: password }),
      );
      if (r.code !== 0) {
        throw new PolyarchError({
          code: "E_AUTH",
          message: `docker-credential-${helper} could not store credentials for ${registry}`,
          hint: "Run the helper by hand to see why.",
        });
      }
      return;
    }
    cfg.auths = {
      ...(cfg.auths ?? {}),
      [key]: { auth: Buffer.from(`${username}:${password}`).toString("base64") },
    };
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    await writeFile(tmp, `${JSON.stringify(cfg, null, "\t")}\n`, { mode: 0o600 });
    await rename(tmp, this.file);
  }

  async erase(registry: string): Promise<void> {
    const cfg = await this.#read();
    const key = configKeys(registry)[0]!;
    if (cfg.auths) for (const k of configKeys(registry)) delete cfg.auths[k];
    const helper = cfg.credHelpers?.[key] ?? cfg.credsStore;
    if (helper) await this.#run(helper, "erase", key);
    const tmp = `${this.file}.tmp-${process.pid}`;
    await writeFile(tmp, `${JSON.stringify(cfg, null, "\t")}\n`, { mode: 0o600 });
    await rename(tmp, this.file);
  }
}
