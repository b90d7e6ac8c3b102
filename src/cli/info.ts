import { PolyarchError } from "../errors.js";
import { readGit } from "../git/index.js";
import { exec, onPath } from "../util/exec.js";
import { parseDockerEndpoint } from "../builder/dockerfile/backends.js";
import { formatPlatform, hostPlatform } from "../platform/index.js";
import type { CliIO } from "./_io.js";
import { makeClient } from "./_registry.js";
import { ciBranch, loadResolved } from "./config.js";

export interface InfoFlags {
  env?: string;
  registry?: string;
  repository?: string;
  config?: string;
  insecure?: string[];
}

/**
 * Checks the setup before anything runs (seed 002's `make info`): Go and its version, the git
 * state, the config, and for each destination that the registry answers and that the
 * credentials may push — by opening an upload session and cancelling it.
 */
export async function runInfo(flags: InfoFlags, io: CliIO): Promise<number> {
  let failed = 0;
  const line = (ok: boolean | "warn", what: string, detail: string) => {
    if (ok === false) failed++;
    io.stdout.write(
      `${ok === true ? "ok  " : ok === "warn" ? "warn" : "FAIL"}  ${what.padEnd(28)} ${detail}\n`,
    );
  };
  /** A Docker engine builder: reachable, its version and native platform. */
  const checkDocker = async (platform: string, endpoint: string, required: boolean) => {
    const d = parseDockerEndpoint(endpoint)!;
    const v = await exec(
      "docker",
      ["version", "--format", "{{.Server.Version}} {{.Server.Os}}/{{.Server.Arch}}"],
      {
        env: { ...io.env, ...(d.host ? { DOCKER_HOST: d.host } : {}) },
      },
    ).catch(() => undefined);
    const [version, native] = v?.code === 0 ? v.stdout.trim().split(" ") : [];
    const fits = platform === "local" || native === platform;
    line(
      v?.code === 0 ? (fits ? true : "warn") : required ? false : "warn",
      `builder ${platform}`,
      v?.code === 0
        ? `${endpoint}: Docker ${version}, native ${native}${fits ? "" : ` (${platform} runs under the engine's emulation)`}`
        : `${endpoint}: ${v ? "engine not reachable" : "docker CLI not found"}`,
    );
  };
  const go = await exec(io.env["POLYARCH_GO"] || "go", ["env", "GOVERSION"], { env: io.env }).catch(
    () => undefined,
  );
  const version = go?.code === 0 ? go.stdout.trim() : undefined;
  const m = version ? /^go(\d+)\.(\d+)/.exec(version) : null;
  line(
    !!m && (Number(m[1]) > 1 || Number(m[2]) >= 22),
    "go toolchain",
    version
      ? `${version}${m && Number(m[2]) < 22 && Number(m[1]) === 1 ? " (polyarch needs 1.22 or newer)" : ""}`
      : "not found: install Go 1.22+ (bash .ci/setup does it on Debian)",
  );
  try {
    const hint = ciBranch(io.env);
    const g = await readGit(io.cwd, { env: io.env, ...(hint ? { branchHint: hint } : {}) });
    line(
      g.dirty ? "warn" : true,
      "git",
      `${g.commit.slice(0, 12)} on ${g.branch ?? "(detached)"}${g.tags.length ? `, tags ${g.tags.join(" ")}` : ""}${g.dirty ? ", uncommitted changes (tags get -dirty)" : ", clean"}`,
    );
  } catch (e) {
    line(false, "git", (e as Error).message);
  }
  let config;
  try {
    config = await loadResolved(io, flags);
    line(
      true,
      "config",
      `${config.file}: ${config.images.length} image(s)${config.environment.value ? `, environment ${config.environment.value}` : ""}`,
    );
  } catch (e) {
    line(false, "config", (e as Error).message);
  }
  // The builder Dockerfile stages that need a process go to.
  const dockerImages = config?.images.filter((i) => i.dockerfile).length ?? 0;
  const bh = await exec("buildah", ["--version"], { env: io.env }).catch(() => undefined);
  const host = formatPlatform({ ...hostPlatform(), os: "linux" });
  if (bh?.code === 0 || !onPath("docker", io.env))
    line(
      bh?.code === 0 ? true : dockerImages ? false : "warn",
      "builder buildah",
      bh?.code === 0
        ? `${bh.stdout.trim()}: native for ${host}, other platforms through qemu-user`
        : "not found: Dockerfile stages that need a process cannot run (apt-get install buildah, or docker.io)",
    );
  else await checkDocker("local", "docker", dockerImages > 0);
  // Each builder in polyarch.yaml: reachable, and the platforms it runs.
  for (const [platform, endpoint] of Object.entries(config?.builders ?? {})) {
    if (endpoint === "buildah") continue;
    if (parseDockerEndpoint(endpoint)) {
      await checkDocker(platform, endpoint, true);
      continue;
    }
    const w = await exec("buildctl", ["--addr", endpoint, "debug", "workers"], { env: io.env }).catch(
      () => undefined,
    );
    const platforms = w?.code === 0 ? (/\s(linux\/\S+)/.exec(w.stdout)?.[1] ?? "") : "";
    line(
      w?.code === 0 && platforms.split(",").includes(platform),
      `builder ${platform}`,
      w?.code === 0
        ? `${endpoint}: platforms ${platforms}${platforms.split(",").includes(platform) ? "" : ` (not ${platform})`}`
        : `${endpoint}: ${w ? "not reachable" : "buildctl not found"}`,
    );
  }
  if (config) {
    const client = makeClient(io, flags.insecure);
    try {
      const seen = new Set<string>();
      for (const im of config.images) {
        if (!im.reference) {
          line("warn", `destination ${im.name}`, "no registry set: images go to out/oci");
          continue;
        }
        const repo = { registry: im.reference.registry, repository: im.reference.repository };
        const key = `${repo.registry}/${repo.repository}`;
        if (seen.has(key)) continue;
        seen.add(key);
        try {
          await client.canPush(repo);
          line(true, `push ${key}`, "registry reachable, credentials may push");
        } catch (e) {
          line(
            false,
            `push ${key}`,
            e instanceof PolyarchError ? `${e.message}${e.hint ? ` (${e.hint})` : ""}` : String(e),
          );
        }
      }
    } finally {
      await client.transport.close();
    }
  }
  if (failed)
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `${failed} check${failed === 1 ? "" : "s"} failed`,
      hint: "Fix the lines marked FAIL above before polyarch run.",
    });
  return 0;
}
