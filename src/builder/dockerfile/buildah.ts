/**
 * Delegation to buildah (issue 9 §4): local and daemonless, chroot isolation, storage of its
 * own under polyarch's cache (so its layer cache makes a rerun cheap). A stage is handed
 * over as buildah's --target; its result comes back as an OCI layout that the native steps
 * after it build on. buildah runs the host's platform natively and others through
 * qemu-user (binfmt_misc), which is said, with its cost, before it starts.
 *
 * A stage without a name cannot be a --target, so buildah gets a copy of the Dockerfile in
 * which every unnamed FROM carries `AS polyarch-stage-<n>` (indexes in --from still work),
 * and FROM --platform carries the platform polyarch planned. Single-line FROMs only.
 */
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import { formatPlatform, type Platform } from "../../platform/index.js";
import type { Exec } from "../../util/exec.js";
import type { Dockerfile } from "./parse.js";

export interface StageRequest {
  df: Dockerfile;
  /** The Dockerfile on disk and its context. */
  dockerfile: string;
  context: string;
  stage: number;
  platform: Platform;
  /** Each needed stage's platform as polyarch planned it (FROM --platform expanded). */
  stagePlatforms: ReadonlyMap<number, Platform>;
  buildArgs: Record<string, string>;
  sourceDateEpoch: number;
  signal?: AbortSignal;
}

export interface StageBackend {
  readonly name: string;
  /** Builds one stage for one platform; returns an OCI layout holding it under the tag "stage". */
  buildStage(req: StageRequest): Promise<string>;
}

export class BuildahBackend implements StageBackend {
  readonly name = "buildah";
  readonly #exec: Exec;
  readonly #root: string;
  readonly #env: Record<string, string | undefined>;
  constructor(opts: { exec: Exec; cacheDir: string; env: Record<string, string | undefined> }) {
    this.#exec = opts.exec;
    this.#root = path.join(opts.cacheDir, "buildah");
    this.#env = opts.env;
  }

  async #storageConf(): Promise<string> {
    const conf = path.join(this.#root, "storage.conf");
    await mkdir(this.#root, { recursive: true });
    // vfs: no overlay mounts needed, so it works wherever buildah's chroot isolation does.
    await writeFile(
      conf,
      `[storage]\ndriver = "vfs"\nrunroot = "${path.join(this.#root, "run")}"\ngraphroot = "${path.join(this.#root, "graph")}"\n`,
    );
    return conf;
  }

  /** One buildah at a time on this storage: concurrent pulls of one base race for its name. */
  #queue: Promise<unknown> = Promise.resolve();

  buildStage(req: StageRequest): Promise<string> {
    const run = this.#queue.then(
      () => this.#build(req),
      () => this.#build(req),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #build(req: StageRequest): Promise<string> {
    const out = path.join(this.#root, "..", "delegated");
    await mkdir(out, { recursive: true });
    const dir = await mkdtemp(path.join(out, "stage-"));
    // The Dockerfile with every stage named, next to nothing else (the context stays where it is).
    const lines = (await readFile(req.dockerfile, "utf8")).split("\n");
    for (const s of req.df.stages) {
      const i = s.from.line - 1;
      // buildah 1.28 does not expand $BUILDPLATFORM in FROM --platform: give it the value.
      const p = req.stagePlatforms.get(s.index);
      if (p && s.from.flags.has("platform"))
        lines[i] = lines[i]!.replace(/--platform=\S+/, `--platform=${formatPlatform(p)}`);
      if (!s.name) lines[i] = `${lines[i]!.replace(/\s+$/, "")} AS polyarch-stage-${s.index}`;
    }
    const named = path.join(dir, "Dockerfile");
    await writeFile(named, lines.join("\n"));
    const target = req.df.stages[req.stage]!.name ?? `polyarch-stage-${req.stage}`;
    const args = [
      "bud",
      "--isolation",
      "chroot",
      "--layers",
      "--timestamp",
      String(req.sourceDateEpoch),
      "--platform",
      formatPlatform(req.platform),
      "-f",
      named,
      "--target",
      target,
      ...Object.entries(req.buildArgs).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
      "-t",
      `oci:${path.join(dir, "layout")}:stage`,
      req.context,
    ];
    let r;
    try {
      r = await this.#exec("buildah", args, {
        env: { ...this.#env, CONTAINERS_STORAGE_CONF: await this.#storageConf() },
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (e) {
      throw new PolyarchError({
        code: "E_TOOLCHAIN",
        message: "buildah could not be started",
        hint: "Install buildah (Debian: apt-get install buildah), or keep the Dockerfile to native steps.",
        cause: e,
      });
    }
    if (r.code !== 0) {
      const tail = `${r.stderr}${r.stdout}`.trimEnd().split("\n").slice(-20).join("\n");
      throw new PolyarchError({
        code: "E_STAGE",
        message: `buildah failed to build stage ${req.df.stages[req.stage]!.name ?? req.stage} of ${req.df.file} for ${formatPlatform(req.platform)}:\n${tail}`,
        hint: "Fix the step buildah reports above; nothing was published.",
      });
    }
    return path.join(dir, "layout");
  }
}

/** True when buildah can be started here. */
export async function buildahAvailable(exec: Exec): Promise<boolean> {
  try {
    return (await exec("buildah", ["--version"])).code === 0;
  } catch {
    return false;
  }
}
