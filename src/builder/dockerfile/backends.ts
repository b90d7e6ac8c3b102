/**
 * Delegation to buildah (issue 9 §4): local and daemonless, chroot isolation, storage of its
 * own under polyarch's cache (so its layer cache makes a rerun cheap). A stage is handed
 * over as buildah's --target; its result comes back as an OCI layout that the native steps
 * after it build on. buildah runs the host's platform natively and others through
 * qemu-user (binfmt_misc), which is said, with its cost, before it starts.
 *
 * A stage without a name cannot be a --target, so buildah gets a copy of the Dockerfile in
 * which every unnamed FROM carries `AS polyarch-stage-<n>` (indexes in --from still work),
 * and FROM --platform carries the platform polyarch planned.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import { importDockerArchive } from "../../layout/docker-archive.js";
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
  /** A registry repository delegated stages share their build cache through (cache-from/to). */
  cache?: string;
  signal?: AbortSignal;
}

/** True for a registry on a loopback address, which speaks plain HTTP. */
function loopback(ref: string): boolean {
  return /^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?\//.test(ref);
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

  /**
   * One storage per platform the stage runs on (vfs: no overlay mounts needed, so it works
   * wherever buildah's chroot isolation does). Builds on one storage go one at a time —
   * concurrent pulls of one base race for its name in buildah 1.28 — while stages of different
   * platforms (a native amd64 one and an emulated arm64 one, say) run side by side.
   */
  async #storageConf(key: string): Promise<string> {
    // The one storage of earlier versions (graph/, run/ right under buildah/) is no longer
    // read: its copies of bases would otherwise stay in the cache for good.
    this.#legacy ??= Promise.all(
      ["graph", "run", "storage.conf"].map((n) =>
        rm(path.join(this.#root, n), { recursive: true, force: true }).catch(() => {}),
      ),
    );
    await this.#legacy;
    const root = path.join(this.#root, key);
    const conf = path.join(root, "storage.conf");
    await mkdir(root, { recursive: true });
    await writeFile(
      conf,
      `[storage]\ndriver = "vfs"\nrunroot = "${path.join(root, "run")}"\ngraphroot = "${path.join(root, "graph")}"\n`,
    );
    return conf;
  }

  #legacy: Promise<unknown> | undefined;

  /** The last build queued on each storage. */
  readonly #queues = new Map<string, Promise<unknown>>();

  buildStage(req: StageRequest): Promise<string> {
    const key = formatPlatform(req.stagePlatforms.get(req.stage) ?? req.platform).replaceAll("/", "-");
    const run = (this.#queues.get(key) ?? Promise.resolve()).then(
      () => this.#build(req, key),
      () => this.#build(req, key),
    );
    this.#queues.set(
      key,
      run.catch(() => undefined),
    );
    return run;
  }

  async #build(req: StageRequest, key: string): Promise<string> {
    const out = path.join(this.#root, "..", "delegated");
    const { dir, named, target } = await prepareStage(out, req);
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
      ...(req.cache
        ? [
            "--cache-from",
            req.cache,
            "--cache-to",
            req.cache,
            ...(loopback(req.cache) ? ["--tls-verify=false"] : []),
          ]
        : []),
      "-t",
      `oci:${path.join(dir, "layout")}:stage`,
      req.context,
    ];
    await runBuilder(
      this.#exec,
      "buildah",
      args,
      { ...this.#env, CONTAINERS_STORAGE_CONF: await this.#storageConf(key) },
      req,
      {
        name: this.name,
        install: "Install buildah (Debian: apt-get install buildah), or keep the Dockerfile to native steps.",
        fix: "Fix the step buildah reports above; nothing was published.",
      },
    );
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

/**
 * A BuildKit daemon (`tcp://`, `unix://`) — a native builder node such as seed 002's arm64
 * VM. The stage goes as the dockerfile frontend's target; the result comes back through the
 * OCI exporter as a tar that is unpacked into a layout. Bases come from registries (BuildKit
 * has no `oci:` FROM).
 */
export class BuildkitBackend implements StageBackend {
  readonly name: string;
  readonly #exec: Exec;
  readonly #addr: string;
  readonly #out: string;
  readonly #env: Record<string, string | undefined>;
  constructor(opts: { exec: Exec; addr: string; cacheDir: string; env: Record<string, string | undefined> }) {
    this.#exec = opts.exec;
    this.#addr = opts.addr;
    this.#out = path.join(opts.cacheDir, "delegated");
    this.#env = opts.env;
    this.name = `buildkit ${opts.addr}`;
  }

  async buildStage(req: StageRequest): Promise<string> {
    const { dir, target } = await prepareStage(this.#out, req);
    const args = [
      "--addr",
      this.#addr,
      "build",
      "--frontend",
      "dockerfile.v0",
      "--local",
      `context=${req.context}`,
      "--local",
      `dockerfile=${dir}`,
      "--opt",
      `target=${target}`,
      "--opt",
      `platform=${formatPlatform(req.platform)}`,
      ...Object.entries(req.buildArgs).flatMap(([k, v]) => ["--opt", `build-arg:${k}=${v}`]),
      "--opt",
      `build-arg:SOURCE_DATE_EPOCH=${req.sourceDateEpoch}`,
      "--output",
      `type=oci,dest=${path.join(dir, "out.tar")},rewrite-timestamp=true`,
      // One cache image per stage and platform, so a run on an arm64 node can seed CI's arm64 cache.
      ...(req.cache
        ? (() => {
            const ref = `${req.cache}:${target}-${formatPlatform(req.platform).replaceAll("/", "-")}`;
            return [
              "--import-cache",
              `type=registry,ref=${ref}`,
              "--export-cache",
              `type=registry,ref=${ref},mode=max`,
            ];
          })()
        : []),
    ];
    await runBuilder(this.#exec, "buildctl", args, this.#env, req, {
      name: this.name,
      install: "Install BuildKit's buildctl, or map no platform to a BuildKit builder.",
      fix: "Fix the step the builder reports above, or check that the daemon is reachable; nothing was published.",
    });
    const layout = path.join(dir, "layout");
    await mkdir(layout, { recursive: true });
    const x = await this.#exec("tar", ["-xf", path.join(dir, "out.tar"), "-C", layout]);
    if (x.code !== 0)
      throw new PolyarchError({
        code: "E_STAGE",
        message: `cannot unpack ${this.name}'s result: ${x.stderr.trim()}`,
        hint: "Check the disk space of polyarch's cache.",
      });
    return layout;
  }
}

/** A Docker engine endpoint as `--builder` and `builders:` write it. */
export interface DockerEndpoint {
  /** DOCKER_HOST for the engine (unix://, tcp://, ssh://); absent, the user's own setting. */
  host?: string;
  /** The network RUN steps get (`docker build --network`), e.g. host on an engine without a bridge. */
  network?: string;
}

/** Parses `docker`, `docker+<DOCKER_HOST>` and either with `?network=<mode>`; undefined for other builders. */
export function parseDockerEndpoint(endpoint: string): DockerEndpoint | undefined {
  const m = /^docker(?:\+((?:unix|tcp|ssh|npipe):\/\/[^?]*))?(?:\?network=([a-z0-9_.-]+))?$/.exec(endpoint);
  if (!m) return undefined;
  return { ...(m[1] ? { host: m[1] } : {}), ...(m[2] ? { network: m[2] } : {}) };
}

/** True for an endpoint `--builder`/`builders:` accept: buildah, a BuildKit daemon, a Docker engine. */
export function isBuilderEndpoint(v: string): boolean {
  return v === "buildah" || /^(tcp|unix):\/\/\S+$/.test(v) || parseDockerEndpoint(v) !== undefined;
}

/**
 * A Docker engine (the user's DOCKER_HOST, or one named in the endpoint, `ssh://` included),
 * one platform per `docker build`. The engine's BuildKit is used (DOCKER_BUILDKIT=1); a
 * client without it (a newer CLI lacking buildx) falls back to the engine's classic builder.
 * The stage's image comes back through `docker save` and is imported into a layout; the
 * engine keeps its own build cache (no registry cache-from/to through the plain CLI).
 */
export class DockerBackend implements StageBackend {
  readonly name: string;
  readonly #exec: Exec;
  readonly #endpoint: DockerEndpoint;
  readonly #out: string;
  readonly #env: Record<string, string | undefined>;
  constructor(opts: {
    exec: Exec;
    endpoint: DockerEndpoint;
    cacheDir: string;
    env: Record<string, string | undefined>;
  }) {
    this.#exec = opts.exec;
    this.#endpoint = opts.endpoint;
    this.#out = path.join(opts.cacheDir, "delegated");
    this.#env = { ...opts.env, ...(opts.endpoint.host ? { DOCKER_HOST: opts.endpoint.host } : {}) };
    this.name = `docker${opts.endpoint.host ? ` ${opts.endpoint.host}` : ""}`;
  }

  async buildStage(req: StageRequest): Promise<string> {
    const { dir, named, target } = await prepareStage(this.#out, req);
    const iid = path.join(dir, "iid");
    const args = [
      "build",
      "--platform",
      formatPlatform(req.platform),
      "-f",
      named,
      "--target",
      target,
      ...Object.entries(req.buildArgs).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
      "--build-arg",
      `SOURCE_DATE_EPOCH=${req.sourceDateEpoch}`,
      ...(this.#endpoint.network ? ["--network", this.#endpoint.network] : []),
      "--iidfile",
      iid,
      req.context,
    ];
    const text = {
      name: this.name,
      install:
        "Install the Docker CLI (Debian: apt-get install docker.io), or map no platform to a docker builder.",
      fix: "Fix the step the engine reports above, or check that it is reachable (docker version); nothing was published.",
    };
    try {
      await runBuilder(this.#exec, "docker", args, { ...this.#env, DOCKER_BUILDKIT: "1" }, req, text);
    } catch (e) {
      // A CLI whose BuildKit lives in a missing buildx plugin: the engine's classic builder.
      if (!(e instanceof PolyarchError && /buildx component is missing/.test(e.message))) throw e;
      // The classic builder does not set the automatic platform args: they are passed as build args.
      const p = req.platform;
      const auto = {
        TARGETPLATFORM: formatPlatform(p),
        TARGETOS: p.os,
        TARGETARCH: p.architecture,
        TARGETVARIANT: p.variant ?? "",
      };
      const classic = [
        ...args.slice(0, 1),
        ...Object.entries(auto)
          .filter(([k]) => !(k in req.buildArgs))
          .flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
        ...args.slice(1),
      ];
      await runBuilder(this.#exec, "docker", classic, { ...this.#env, DOCKER_BUILDKIT: "0" }, req, text);
    }
    const id = (await readFile(iid, "utf8")).trim();
    const saved = path.join(dir, "saved");
    await mkdir(saved);
    const tar = path.join(dir, "image.tar");
    const save = await this.#exec("docker", ["save", "-o", tar, id], { env: this.#env });
    const x = save.code === 0 ? await this.#exec("tar", ["-xf", tar, "-C", saved]) : save;
    if (x.code !== 0)
      throw new PolyarchError({
        code: "E_STAGE",
        message: `cannot take ${this.name}'s result back: ${x.stderr.trim()}`,
        hint: "Check the engine (docker version) and the disk space of polyarch's cache.",
      });
    const layout = path.join(dir, "layout");
    await importDockerArchive(saved, layout, "stage");
    await rm(saved, { recursive: true, force: true });
    await rm(tar, { force: true });
    return layout;
  }
}

/** Runs a builder's command line; a failure to start or a non-zero exit is one clear error with its output's tail. */
async function runBuilder(
  exec: Exec,
  program: string,
  args: string[],
  env: Record<string, string | undefined>,
  req: StageRequest,
  text: { name: string; install: string; fix: string },
): Promise<void> {
  let r;
  try {
    r = await exec(program, args, { env, ...(req.signal ? { signal: req.signal } : {}) });
  } catch (e) {
    throw new PolyarchError({
      code: "E_TOOLCHAIN",
      message: `${program} could not be started`,
      hint: text.install,
      cause: e,
    });
  }
  if (r.code !== 0) {
    const tail = `${r.stderr}${r.stdout}`.trimEnd().split("\n").slice(-20).join("\n");
    throw new PolyarchError({
      code: "E_STAGE",
      message: `${text.name} failed to build stage ${req.df.stages[req.stage]!.name ?? req.stage} of ${req.df.file} for ${formatPlatform(req.platform)}:\n${tail}`,
      hint: text.fix,
    });
  }
}

/** A fresh directory under `out` for one delegated stage, the Dockerfile a builder gets in it, and the stage's target name. */
async function prepareStage(
  out: string,
  req: StageRequest,
): Promise<{ dir: string; named: string; target: string }> {
  await mkdir(out, { recursive: true });
  const dir = await mkdtemp(path.join(out, "stage-"));
  const named = await namedDockerfile(req, dir);
  return { dir, named, target: req.df.stages[req.stage]!.name ?? `polyarch-stage-${req.stage}` };
}

/** The Dockerfile as a builder gets it: every stage named, FROM --platform filled in (see above). */
async function namedDockerfile(req: StageRequest, dir: string): Promise<string> {
  const lines = (await readFile(req.dockerfile, "utf8")).split("\n");
  for (const s of req.df.stages) {
    // Each FROM is written again on one line (continuations joined, the lines it spanned left
    // empty so later line numbers hold), with the planned platform and a name.
    const p = req.stagePlatforms.get(s.index);
    const flags = [...s.from.flags].flatMap(([k, vs]) =>
      k === "platform"
        ? p
          ? [`--platform=${formatPlatform(p)}`]
          : vs.map((v) => `--platform=${v}`)
        : vs.map((v) => `--${k}=${v}`),
    );
    lines[s.from.line - 1] = [
      "FROM",
      ...flags,
      s.from.args,
      ...(s.name ? [] : ["AS", `polyarch-stage-${s.index}`]),
    ].join(" ");
    for (let i = s.from.line; i < s.from.endLine; i++) lines[i] = "";
  }
  const named = path.join(dir, "Dockerfile");
  await writeFile(named, lines.join("\n"));
  return named;
}

/**
 * Which builder a stage goes to: a builder mapped to the stage's platform (a native node),
 * else the local one — native for the build machine's platform, emulated for the others.
 */
export class Builders {
  readonly #local: StageBackend;
  readonly #byPlatform: ReadonlyMap<string, StageBackend>;
  readonly #build: Platform;
  constructor(local: StageBackend, byPlatform: ReadonlyMap<string, StageBackend>, buildPlatform: Platform) {
    this.#local = local;
    this.#byPlatform = byPlatform;
    this.#build = buildPlatform;
  }
  pick(stagePlatform: Platform): { backend: StageBackend; native: boolean } {
    const key = formatPlatform(stagePlatform);
    const mapped = this.#byPlatform.get(key);
    if (mapped) return { backend: mapped, native: true };
    return { backend: this.#local, native: key === formatPlatform(this.#build) };
  }
}
