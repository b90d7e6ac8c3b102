import os from "node:os";
import path from "node:path";
import { DockerConfigCredentials, RegistryClient, Transport } from "../registry/index.js";
import type { CliIO } from "./_io.js";

/** docker's config.json: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigFile(env: CliIO["env"]): string {
  const dir = env["DOCKER_CONFIG"] || path.join(env["HOME"] || os.homedir(), ".docker");
  return path.join(dir, "config.json");
}

/** Registries allowed over plain HTTP: --insecure flags plus POLYARCH_INSECURE_REGISTRIES (comma separated). */
export function insecureRegistries(env: CliIO["env"], flags: string[] = []): string[] {
  return [...flags, ...(env["POLYARCH_INSECURE_REGISTRIES"] ?? "").split(",")]
    .map((s) => s.trim())
    .filter(Boolean);
}

/** POLYARCH_RETRY_DELAYS_MS="1000,3000" overrides the waits between attempts (tests use tiny ones). */
function retryDelays(env: CliIO["env"]): number[] | undefined {
  const v = env["POLYARCH_RETRY_DELAYS_MS"];
  if (!v) return undefined;
  const ms = v.split(",").map(Number);
  return ms.every((n) => Number.isFinite(n) && n >= 0) ? ms : undefined;
}

export function makeClient(io: CliIO, insecure: string[] = []): RegistryClient {
  const credentials = new DockerConfigCredentials({ configFile: dockerConfigFile(io.env) });
  const delaysMs = retryDelays(io.env);
  return new RegistryClient(
    new Transport({
      credentials,
      insecure: insecureRegistries(io.env, insecure),
      userAgent: "polyarch",
      ...(delaysMs ? { retry: { delaysMs } } : {}),
    }),
  );
}
