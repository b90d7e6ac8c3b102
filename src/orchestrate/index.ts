/**
 * The one room where resolved options become builders and publishers (ko's resolver.go is the
 * model): `build`, `run`, `copy` and `mirror` — and later the server — ask it for a build or a
 * publish and never construct a builder, a publisher or a registry client themselves.
 *
 * 1. `open` reads an artifact from a location (a layout tag or a registry reference).
 * 2. `build` resolves the base per platform, picks the builder for the source, and runs it
 *    with the compile slots and the layer cache every build of this orchestrator shares.
 * 3. `publish` writes an artifact to each destination in turn — registry first, so a local
 *    output never claims what a push then failed to store — tags last, then per-platform tags.
 */
import { createReadStream } from "node:fs";
import type { CgoOptions } from "../builder/go/cgo.js";
import type { BuildEvent, Builder, ImageSettings } from "../builder/index.js";
import type { Digest } from "../digest/index.js";
import { addContext, PolyarchError } from "../errors.js";
import type { BaseImage } from "../image/assemble.js";
import { baseImagesFor } from "../image/base.js";
import { type Artifact, type Index, imagePlatform } from "../image/index.js";
import { withDockerMediaTypes } from "../image/docker-types.js";
import { LayerCache } from "../layer/cache.js";
import { layoutArtifact } from "../layout/artifact.js";
import { OciLayout } from "../layout/index.js";
import { formatPlatform, hostPlatform, type Platform } from "../platform/index.js";
import type { Builders, StageBackend } from "../builder/dockerfile/backends.js";
import { type Exec, exec, onPath } from "../util/exec.js";
import { LayoutPublisher, type Publisher, TarballPublisher } from "../publish/index.js";
import { type PushStats, RegistryPublisher, type StagedBlobs } from "../publish/registry.js";
import { formatReference, type Reference } from "../ref/index.js";
import { type RegistryClient, type Repo, registryArtifact } from "../registry/index.js";
import { Semaphore } from "../util/limit.js";
import { type Location, parseLocation } from "./location.js";

export type { ImageSettings };

/** A Go main package. */
export interface GoSource {
  kind: "go";
  /** Where go runs, absolute. */
  dir: string;
  /** The main package as go build takes it ("." or "./cmd/api"); the entrypoint. */
  main: string;
  /** More main packages built into the same image, each /app/<name>. */
  extraMains?: string[];
  ldflags?: string;
  /** Keep DWARF and the symbol table (default: left out). */
  debugInfo?: boolean;
  buildTags?: string[];
  /** CGO_ENABLED=1 with a C compiler per platform; absent: pure Go. */
  cgo?: CgoOptions;
}

/** A Dockerfile and its build context. */
export interface DockerfileSource {
  kind: "dockerfile";
  /** Absolute paths. */
  dockerfile: string;
  context: string;
  /** --build-arg values; {{os}}, {{arch}}, {{variant}}, {{platform}} are filled per platform. */
  buildArgs: Record<string, string>;
  target?: string;
  /** A registry repository for the build cache of delegated stages. */
  cache?: string;
}

export type BuildSource = GoSource | DockerfileSource;

export interface BuildRequest {
  source: BuildSource;
  platforms: Platform[];
  sourceDateEpoch: number;
  image: ImageSettings;
  /** A registry reference or oci:<dir>[:tag]; scratch when absent. */
  base?: string;
  /** "docker": the result under Docker v2.2 media types (manifest list, schema 2); default OCI. */
  mediaTypes?: "oci" | "docker";
}

/** The machine's tools, resolved by the CLI (or a server) once. */
export interface Toolchain {
  /** The environment child processes (go) run with. */
  env: Record<string, string | undefined>;
  goBinary: string;
  cacheDir: string;
  /** Compile slots shared by every build of this orchestrator. */
  jobs: number;
  /** Dockerfile builders by platform ("linux/arm64" → "tcp://arm-node:1234"); buildah otherwise. */
  builders?: Record<string, string>;
  exec?: Exec;
}

export interface Built {
  index: Index;
  /** Short name of what was built (the Go binary's name). */
  name: string;
  /** The base's repository, when it is in a registry: blobs there can be mounted, not uploaded. */
  mountFrom?: Repo;
}

export type Destination =
  | { kind: "registry"; repo: Repo }
  | { kind: "oci"; dir: string }
  | { kind: "tarball"; file: string; repository: string; mtime: number; dockerPlatform: Platform };

export interface PublishRequest {
  destinations: Destination[];
  tags: readonly string[];
  /** Extra tags naming one platform's image (registry destinations only). */
  platformTags?: readonly { platform: Platform; tag: string }[];
  /** Repositories the blobs may already be in (cross-repository mount on the same registry). */
  mountFrom?: readonly Repo[];
}

export interface Published {
  destination: Destination;
  digest: Digest;
  references: string[];
  /** What a registry push did (uploads, mounts, manifests written). */
  stats?: PushStats;
}

/** The base images of a build, one per platform, and where they came from. */
export interface ResolvedBase {
  images: Map<string, BaseImage>;
  mountFrom?: Repo;
}

export class Orchestrator {
  readonly #t: Toolchain;
  readonly #makeClient: () => RegistryClient;
  #client: RegistryClient | undefined;
  readonly #slots: Semaphore;
  readonly #layers: LayerCache;
  /** Uploads started during builds, by destination ("registry/repository"; see build's stageTo). */
  readonly #staged = new Map<string, StagedBlobs>();
  /** Uploads run during builds at once (they share the machine with the compiles). */
  readonly #stageSlots = new Semaphore(4);

  constructor(opts: { toolchain: Toolchain; client: () => RegistryClient }) {
    this.#t = opts.toolchain;
    this.#makeClient = opts.client;
    this.#slots = new Semaphore(Math.max(1, opts.toolchain.jobs));
    this.#layers = new LayerCache(opts.toolchain.cacheDir);
  }

  /** The registry client, made on first use: a local build never loads registry code paths. */
  get client(): RegistryClient {
    this.#client ??= this.#makeClient();
    return this.#client;
  }

  async close(): Promise<void> {
    await this.#client?.transport.close();
  }

  /** Reads the artifact a location names (a layout tag, a registry reference). */
  async open(loc: Location, signal?: AbortSignal): Promise<Artifact> {
    if (loc.kind === "oci") {
      const layout = await OciLayout.open(loc.dir);
      return layoutArtifact(layout, await layout.resolve(loc.tag));
    }
    if (loc.kind === "registry") {
      try {
        return await registryArtifact(
          this.client,
          loc.ref.tag || loc.ref.digest ? loc.ref : { ...loc.ref, tag: "latest" },
          undefined,
          signal,
        );
      } catch (e) {
        throw addContext(e, `reading ${loc.text}`);
      }
    }
    throw new PolyarchError({
      code: "E_INPUT",
      message: `cannot read from a tarball (${loc.file})`,
      hint: "Read from oci:<dir>[:tag] or a registry reference.",
    });
  }

  /**
   * Every platform a base image has (`--platform all`), in its index's order; attestation
   * manifests (unknown/unknown) are left out.
   */
  async basePlatforms(base: string, signal?: AbortSignal): Promise<Platform[]> {
    const loc = parseLocation(base);
    if (loc.kind === "tarball")
      throw new PolyarchError({
        code: "E_INPUT",
        message: `a base cannot be a tarball (${base})`,
        hint: "Use a registry reference or oci:<dir>[:tag].",
      });
    const art = await this.open(loc, signal);
    if (art.kind === "image") return [await imagePlatform(art)];
    const seen = new Set<string>();
    const out: Platform[] = [];
    for (const m of (await art.manifest()).manifests) {
      const p = m.platform;
      if (!p || p.os === "unknown" || p.architecture === "unknown") continue;
      const plat: Platform = {
        os: p.os,
        architecture: p.architecture,
        ...(p.variant ? { variant: p.variant } : {}),
      };
      if (seen.has(formatPlatform(plat))) continue;
      seen.add(formatPlatform(plat));
      out.push(plat);
    }
    if (!out.length)
      throw new PolyarchError({
        code: "E_PLATFORM",
        message: `base ${base} lists no platforms`,
        hint: "Name the platforms with -p instead of all.",
      });
    return out;
  }

  /** The base's image for each platform; a platform it lacks is an error naming those it has. */
  async resolveBase(
    base: string,
    platforms: readonly Platform[],
    signal?: AbortSignal,
  ): Promise<ResolvedBase> {
    const loc = parseLocation(base);
    if (loc.kind === "tarball") {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `a base cannot be a tarball (${base})`,
        hint: "Use a registry reference or oci:<dir>[:tag].",
      });
    }
    const name = loc.kind === "registry" ? formatReference(loc.ref) : base;
    const images = await baseImagesFor(await this.open(loc, signal), platforms, name);
    return {
      images,
      ...(loc.kind === "registry"
        ? { mountFrom: { registry: loc.ref.registry, repository: loc.ref.repository } }
        : {}),
    };
  }

  /** The Dockerfile stage builders: buildah locally, and any mapped to a platform (native nodes). */
  #builders(m: typeof import("../builder/dockerfile/backends.js")): Builders {
    const { BuildahBackend, BuildkitBackend, DockerBackend, parseDockerEndpoint } = m;
    const t = this.#t;
    const run = t.exec ?? exec;
    const make = (endpoint: string): StageBackend => {
      if (endpoint === "buildah") return new BuildahBackend({ exec: run, cacheDir: t.cacheDir, env: t.env });
      if (/^(tcp|unix):\/\//.test(endpoint))
        return new BuildkitBackend({ exec: run, addr: endpoint, cacheDir: t.cacheDir, env: t.env });
      const docker = parseDockerEndpoint(endpoint);
      if (docker) return new DockerBackend({ exec: run, endpoint: docker, cacheDir: t.cacheDir, env: t.env });
      throw new PolyarchError({
        code: "E_INPUT",
        message: `builder "${endpoint}" is not one polyarch knows`,
        hint: "Use buildah, docker (or docker+ssh://host, docker+unix:///path), or a BuildKit daemon as tcp://host:port or unix:///path.",
      });
    };
    const byPlatform = new Map<string, StageBackend>();
    for (const [p, endpoint] of Object.entries(t.builders ?? {})) byPlatform.set(p, make(endpoint));
    // The local builder: buildah when it is installed, else the user's Docker engine, else buildah (whose absence is then said).
    const local = onPath("buildah", t.env) || !onPath("docker", t.env) ? "buildah" : "docker";
    return new m.Builders(make(local), byPlatform, { ...hostPlatform(), os: "linux" });
  }

  /**
   * The builder for a request (the one place builders are chosen). Builders are loaded when
   * first asked for: copy, mirror and inspect never load the Dockerfile parser or the builders
   * (~40 ms of every such command).
   */
  async builder(req: BuildRequest, base?: ResolvedBase | Promise<ResolvedBase>): Promise<Builder> {
    const t = this.#t;
    switch (req.source.kind) {
      case "go": {
        const { GoBuilder } = await import("../builder/go/index.js");
        return new GoBuilder({
          dir: req.source.dir,
          mainPackage: req.source.main,
          ...(req.source.extraMains?.length ? { extraMains: req.source.extraMains } : {}),
          platforms: req.platforms,
          sourceDateEpoch: req.sourceDateEpoch,
          env: t.env,
          goBinary: t.goBinary,
          cacheDir: t.cacheDir,
          jobs: t.jobs,
          limiter: this.#slots,
          layerCache: this.#layers,
          ...(req.source.ldflags ? { ldflags: req.source.ldflags } : {}),
          ...(req.source.debugInfo ? { debugInfo: true } : {}),
          ...(req.source.buildTags?.length ? { buildTags: req.source.buildTags } : {}),
          ...(req.source.cgo ? { cgo: req.source.cgo } : {}),
          image: req.image,
          ...(base ? { base: Promise.resolve(base).then((b) => b.images) } : {}),
          ...(t.exec ? { exec: t.exec } : {}),
        });
      }
      case "dockerfile": {
        const [{ DockerfileBuilder }, backends] = await Promise.all([
          import("../builder/dockerfile/index.js"),
          import("../builder/dockerfile/backends.js"),
        ]);
        // Bases are opened once per reference; each platform takes its image from it.
        const opened = new Map<string, Promise<ResolvedBase>>();
        return new DockerfileBuilder({
          dockerfile: req.source.dockerfile,
          context: req.source.context,
          platforms: req.platforms,
          buildPlatform: { ...hostPlatform(), os: "linux" },
          buildArgs: req.source.buildArgs,
          ...(req.source.target ? { target: req.source.target } : {}),
          ...(req.source.cache ? { cache: req.source.cache } : {}),
          sourceDateEpoch: req.sourceDateEpoch,
          layerCache: this.#layers,
          jobs: t.jobs,
          labels: req.image.labels,
          annotations: req.image.annotations,
          builders: this.#builders(backends),
          resolveBase: async (ref, platform, signal) => {
            const key = `${ref} ${formatPlatform(platform)}`;
            let p = opened.get(key);
            if (!p) {
              p = this.resolveBase(ref, [platform], signal);
              opened.set(key, p);
            }
            return (await p).images.get(formatPlatform(platform))!;
          },
        });
      }
    }
  }

  /**
   * Resolves the base, then builds every platform. With `stageTo`, each new layer a builder
   * reports as a file starts uploading to those registries at once, while the other platforms
   * still compile; `publish` then waits for those uploads instead of making them. Only blobs
   * go early: no manifest or tag is written before every platform is built, and a build that
   * fails cancels its uploads (a registry forgets blobs no manifest names).
   */
  async build(
    req: BuildRequest,
    opts: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void; stageTo?: readonly Destination[] } = {},
  ): Promise<Built> {
    const repos = (opts.stageTo ?? []).flatMap((d) => (d.kind === "registry" ? [d.repo] : []));
    const uploads: Promise<unknown>[] = [];
    const cancel = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, cancel.signal]) : cancel.signal;
    const onEvent = (e: BuildEvent) => {
      if (e.type === "layer" && e.file)
        for (const repo of repos) {
          const p = this.#stage(repo, { digest: e.digest as Digest, size: e.size }, e.file, signal);
          if (p) uploads.push(p);
        }
      opts.onEvent?.(e);
    };
    try {
      // Read while the builder starts (a Go build compiles meanwhile); a base that cannot be
      // read is still the error reported.
      const baseP = req.base ? this.resolveBase(req.base, req.platforms, opts.signal) : undefined;
      baseP?.catch(() => {}); // awaited below, and by the builder
      const built = await (
        await this.builder(req, baseP)
      ).build({
        ...(opts.signal ? { signal: opts.signal } : {}),
        onEvent,
      });
      const base = await baseP;
      const index =
        req.mediaTypes === "docker" ? ((await withDockerMediaTypes(built.index)) as Index) : built.index;
      return { index, name: built.name, ...(base?.mountFrom ? { mountFrom: base.mountFrom } : {}) };
    } catch (e) {
      // Nothing of a failed build keeps running after it reports.
      cancel.abort();
      await Promise.allSettled(uploads);
      throw e;
    }
  }

  /** Starts uploading a layer file to a repository unless already started; the new upload, if any. */
  #stage(repo: Repo, desc: { digest: Digest; size: number }, file: string, signal: AbortSignal) {
    const key = describeDestination({ kind: "registry", repo });
    let staged = this.#staged.get(key);
    if (!staged) this.#staged.set(key, (staged = new Map() as StagedBlobs));
    if (staged.has(desc.digest)) return undefined;
    const p = this.#stageSlots
      .run(() => this.client.uploadBlob(repo, desc, () => createReadStream(file), { signal }))
      .catch(() => undefined);
    staged.set(desc.digest, p);
    return p;
  }

  /** The publisher for one destination (the one place publishers are chosen). */
  publisher(dest: Destination, mountFrom: readonly Repo[] = []): Publisher {
    switch (dest.kind) {
      case "registry": {
        const from = mountFrom
          .filter((m) => m.registry === dest.repo.registry && m.repository !== dest.repo.repository)
          .map((m) => m.repository);
        const staged = this.#staged.get(describeDestination(dest));
        return new RegistryPublisher(this.client, dest.repo, {
          ...(from.length ? { mountFrom: from } : {}),
          ...(staged ? { staged } : {}),
        });
      }
      case "oci":
        return new LayoutPublisher(dest.dir);
      case "tarball":
        return new TarballPublisher(dest.file, {
          repository: dest.repository,
          mtime: dest.mtime,
          dockerPlatform: dest.dockerPlatform,
        });
    }
  }

  /** Publishes to every destination, registries first; per-platform tags after the main ones. */
  async publish(
    artifact: Artifact,
    req: PublishRequest,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Published[]> {
    const order = [...req.destinations].sort(
      (a, b) => Number(b.kind === "registry") - Number(a.kind === "registry"),
    );
    const out: Published[] = [];
    for (const destination of order) {
      const pub = this.publisher(destination, req.mountFrom);
      const r = await pub.publish(artifact, req.tags, opts);
      const references = [...r.references];
      if (pub instanceof RegistryPublisher && req.platformTags?.length && artifact.kind === "index")
        references.push(...(await pub.tagPlatforms(artifact, req.platformTags, opts.signal)));
      out.push({
        destination,
        digest: r.digest,
        references,
        ...(r.stats ? { stats: r.stats } : {}),
      });
    }
    return out;
  }
}

/** Human form of a destination, for messages. */
export function describeDestination(d: Destination): string {
  return d.kind === "registry"
    ? `${d.repo.registry}/${d.repo.repository}`
    : d.kind === "oci"
      ? `oci:${d.dir}`
      : `tarball:${d.file}`;
}

/** A registry destination from a reference (its tag and digest are not part of it). */
export function registryDestination(ref: Reference): Destination {
  return { kind: "registry", repo: { registry: ref.registry, repository: ref.repository } };
}
