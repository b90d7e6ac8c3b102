/**
 * The Dockerfile builder: parse, plan per platform, then run every needed stage — natively
 * where no step needs a process (native.ts) — and assemble the target stage's image for each
 * platform into one index. A step that needs a process stops the build with a sentence that
 * names it, its line and why, before anything is published.
 */
import { mkdir, readFile, rename, stat } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import { type BaseImage, imageFromConfig, isoTime, assembleIndex } from "../../image/assemble.js";
import type { Descriptor } from "../../digest/index.js";
import type { Image } from "../../image/index.js";
import { LayerCache, markUsed } from "../../layer/cache.js";
import { LayerPool } from "../../layer/pool.js";
import { Annotation, type ImageConfig, platformObject } from "../../manifest/index.js";
import { formatPlatform, type Platform } from "../../platform/index.js";
import { sha256 } from "../../digest/index.js";
import type { BuildEvent, Builder, BuildResult } from "../index.js";
import { ContextFs } from "./context.js";
import { type Dockerfile, parseDockerfile } from "./parse.js";
import { fillTemplate, planDockerfile, type PlatformPlan, type StagePlan } from "./plan.js";
import type { Builders, StageBackend } from "./backends.js";
import { OciLayout } from "../../layout/index.js";
import { layoutArtifact } from "../../layout/artifact.js";
import { baseFromImage } from "../../image/base.js";
import { NeedsBuilder, runStage, StageState } from "./native.js";
import { type Spool, spoolDir, type Tree, TreeStore } from "./tree.js";

export interface DockerfileBuildOptions {
  /** The Dockerfile, absolute. */
  dockerfile: string;
  /** The build context directory, absolute. */
  context: string;
  platforms: Platform[];
  /** The build machine's platform (BUILDPLATFORM). */
  buildPlatform: Platform;
  buildArgs: Record<string, string>;
  target?: string;
  sourceDateEpoch: number;
  layerCache: LayerCache;
  jobs: number;
  /** Labels and annotations added to every image (the Dockerfile's own come first). */
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** A base image's platform image: from a registry or a layout, as the orchestrator opens them. */
  resolveBase: (ref: string, platform: Platform, signal?: AbortSignal) => Promise<BaseImage>;
  /** Where delegated stages share their build cache (a registry repository). */
  cache?: string;
  /** The builders stages that need a process are handed to; without them, such a stage is an error. */
  builders?: Builders;
}

export class DockerfileBuilder implements Builder {
  readonly #o: DockerfileBuildOptions;
  #df: Dockerfile | undefined;
  #spool: Spool | undefined;
  constructor(opts: DockerfileBuildOptions) {
    this.#o = opts;
  }

  async dockerfile(): Promise<Dockerfile> {
    if (!this.#df) {
      let text: string;
      try {
        text = await readFile(this.#o.dockerfile, "utf8");
      } catch (e) {
        throw new PolyarchError({
          code: "E_INPUT",
          message: `cannot read the Dockerfile ${this.#o.dockerfile}`,
          hint: "Give its path with -f (default: Dockerfile in the context).",
          cause: e,
        });
      }
      this.#df = parseDockerfile(text, path.basename(this.#o.dockerfile));
    }
    return this.#df;
  }

  /** The plan per platform (what --dry-run prints). */
  async plan(): Promise<PlatformPlan[]> {
    return planDockerfile(await this.dockerfile(), {
      platforms: this.#o.platforms,
      buildPlatform: this.#o.buildPlatform,
      buildArgs: this.#o.buildArgs,
      ...(this.#o.target ? { target: this.#o.target } : {}),
    });
  }

  async build(opts: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void } = {}): Promise<BuildResult> {
    const o = this.#o;
    const emit = opts.onEvent ?? (() => {});
    const df = await this.dockerfile();
    const plans = await this.plan();
    const context = await ContextFs.open(o.context, o.dockerfile);
    const created = isoTime(o.sourceDateEpoch);
    const tarOpts = { mtime: o.sourceDateEpoch, uid: 0, gid: 0 };
    // Layers compress in the background while steps go on: as many at once as there are cores.
    const pool = new LayerPool(Math.max(1, o.jobs));
    const spool = await spoolDir(TreeStore.of(o.layerCache));
    this.#spool = spool;
    const name = path.basename(o.context);
    emit({ type: "resolve", target: path.relative(o.context, o.dockerfile) || o.dockerfile, name });
    const tally = new Map<string, number>();
    let emulated = 0;
    try {
      const images = await Promise.all(
        plans.map(async (plan): Promise<Image> => {
          const states = new Map<number, StageState>();
          /** A layer of this platform's image, with the file its bytes are in. */
          const layerEvent = (l: Descriptor, cached: boolean, what: string, file: string) =>
            emit({
              type: "layer",
              platform: plan.platform,
              digest: l.digest,
              size: l.size,
              cached,
              what,
              file,
            });
          // Stages whose layers end up in the image: the target and the stages it is FROM.
          const chain = new Set<number>();
          for (let i: number | undefined = plan.target; i !== undefined;) {
            chain.add(i);
            const b: StagePlan["base"] | undefined = plan.stages.find((x) => x.index === i)?.base;
            i = b?.kind === "stage" ? b.index : undefined;
          }
          for (const stage of plan.stages) {
            opts.signal?.throwIfAborted();
            let state: StageState;
            if (stage.base.kind === "stage") state = await states.get(stage.base.index)!.fork();
            else if (stage.base.kind === "image")
              state = new StageState(
                stage.platform,
                spool,
                await o.resolveBase(stage.base.ref, stage.platform, opts.signal),
              );
            else state = new StageState(stage.platform, spool);
            const t0 = performance.now();
            const step = `stage ${stage.name ?? stage.index}`;
            emit({ type: "step-start", platform: plan.platform, step });
            let where = "native";
            const count = (n: number, w: string) => tally.set(w, (tally.get(w) ?? 0) + n);
            try {
              const delegated = stage.steps.find((x) => x.mode === "delegated");
              if (delegated) throw new NeedsBuilder(delegated.instruction, delegated.why);
              await runStage(stage, state, {
                df,
                context,
                stages: states,
                cache: o.layerCache,
                pool,
                tarOpts,
                layers: chain.has(stage.index),
                imageTree: (ref, platform) => this.#imageTree(ref, platform, opts.signal),
                onLayer: (l) => layerEvent(l, l.cached, l.createdBy, l.file),
                ...(opts.signal ? { signal: opts.signal } : {}),
              });
            } catch (e) {
              if (!(e instanceof NeedsBuilder)) throw e;
              if (!o.builders)
                throw new PolyarchError({
                  code: "E_INPUT",
                  message: `${df.file}:${e.step.line}: ${e.step.original} needs a builder for ${formatPlatform(stage.platform)} (${e.why}), and none is configured`,
                  hint: "Install buildah, or keep the stage to steps polyarch runs natively (see --dry-run).",
                });
              // The whole stage goes to the builder: its own steps, and whatever it needs before.
              const { backend, native } = o.builders.pick(stage.platform);
              const bases = [...states.values(), state].map((x) => x.base?.digest ?? "scratch");
              // Emulation is announced only when the builder really starts (not for a kept result).
              const starting = () => {
                if (native) return;
                emulated++;
                emit({
                  type: "warning",
                  message: `${df.file}:${e.step.line}: stage ${stage.name ?? stage.index} runs under emulation for ${formatPlatform(stage.platform)} on ${backend.name} (${e.why}); emulated builds are typically 10–40× slower than native ones`,
                });
              };
              const d = await this.#delegate(
                backend,
                df,
                stage.index,
                plan,
                { context, bases, starting },
                opts.signal,
              );
              state = d.state;
              where = d.reused ? `${backend.name} (cached)` : backend.name;
              // The builder's result is this stage's base from now on; when it ends up in the
              // image, its layers are reported with their files (a registry push may start).
              if (chain.has(stage.index))
                for (const l of d.state.base?.layers ?? [])
                  layerEvent(
                    l,
                    d.reused,
                    `stage ${stage.name ?? stage.index} on ${backend.name}`,
                    d.layout.blobPath(l.digest),
                  );
            }
            count(stage.steps.length, where);
            emit({ type: "step-done", platform: plan.platform, step, ms: performance.now() - t0, where });
            states.set(stage.index, state);
          }
          const final = states.get(plan.target)!;
          await final.settle();
          return this.#image(plan.platform, final, created);
        }),
      );
      const native = tally.get("native") ?? 0;
      const others = [...tally].filter(([w]) => w !== "native").map(([w, n]) => `${n} on ${w}`);
      emit({
        type: "note",
        message: `${df.file}: ${native} step${native === 1 ? "" : "s"} ran natively${others.length ? `, ${others.join(", ")}` : ""}, over ${plans.length} platform${plans.length === 1 ? "" : "s"}${emulated ? `; ${emulated} stage${emulated === 1 ? "" : "s"} under emulation` : ""}`,
      });
      for (const img of images) {
        const d = await img.descriptor();
        emit({ type: "image", platform: d.platform!, digest: d.digest, size: d.size });
      }
      const index = await assembleIndex(images, { [Annotation.CREATED]: created, ...o.annotations });
      await o.layerCache.trim();
      return { index, name };
    } finally {
      await pool.close();
      // Layers went to the cache; the spooled base contents are no longer needed.
      await spool.close();
    }
  }

  readonly #imageTrees = new Map<string, Promise<Tree>>();

  /** An image's files for COPY --from=<image>, read once per image and platform. */
  #imageTree(ref: string, platform: Platform, signal?: AbortSignal): Promise<Tree> {
    const key = `${ref} ${formatPlatform(platform)}`;
    let p = this.#imageTrees.get(key);
    if (!p) {
      p = (async () =>
        new StageState(platform, this.#spool!, await this.#o.resolveBase(ref, platform, signal)).tree())();
      this.#imageTrees.set(key, p);
    }
    return p;
  }

  /**
   * Builds one stage on the backend and takes its result back as the stage's state. A result
   * is kept under a key of everything the builder is given — the Dockerfile, the stage, the
   * platforms, the build args, SOURCE_DATE_EPOCH, the builder, the bases' digests and the
   * context's fingerprint — so a rebuild with none of them changed does not start the builder
   * (RUN steps are cached by their text, as BuildKit and docker do). Stages that copy from an
   * image by tag or ADD a URL are always built again.
   */
  async #delegate(
    backend: StageBackend,
    df: Dockerfile,
    stage: number,
    plan: PlatformPlan,
    inputs: { context: ContextFs; bases: string[]; starting: () => void },
    signal?: AbortSignal,
  ): Promise<{ state: StageState; reused: boolean; layout: OciLayout }> {
    const target = plan.platform;
    const platform = plan.stages.find((s) => s.index === stage)!.platform;
    const o = this.#o;
    const buildArgs = Object.fromEntries(
      Object.entries(o.buildArgs).map(([k, v]) => [k, fillTemplate(v, target)]),
    );
    const stagePlatforms = new Map(plan.stages.map((s) => [s.index, s.platform]));
    const results = path.join(o.layerCache.dir, "delegated-results");
    const key = cacheableStage(df, stage)
      ? sha256(
          JSON.stringify({
            v: 1,
            dockerfile: await readFile(o.dockerfile, "utf8"),
            stage,
            target: formatPlatform(target),
            stages: [...stagePlatforms].map(([i, p]) => [i, formatPlatform(p)]),
            buildArgs,
            epoch: o.sourceDateEpoch,
            cache: o.cache ?? "",
            builder: backend.name,
            bases: inputs.bases,
            context: await inputs.context.fingerprint(),
          }),
        ).slice("sha256:".length)
      : undefined;
    const kept = key ? path.join(results, key) : undefined;
    let dir: string | undefined;
    let reused = false;
    if (kept && (await stat(path.join(kept, "index.json")).catch(() => undefined))) {
      dir = kept;
      reused = true;
      await markUsed(kept);
    } else {
      inputs.starting();
      dir = await backend.buildStage({
        df,
        dockerfile: o.dockerfile,
        context: o.context,
        stage,
        platform: target,
        stagePlatforms,
        buildArgs,
        sourceDateEpoch: o.sourceDateEpoch,
        ...(o.cache ? { cache: o.cache } : {}),
        ...(signal ? { signal } : {}),
      });
      if (kept) {
        await mkdir(results, { recursive: true });
        // Another build may have kept the same result meanwhile: either copy serves.
        if (
          await rename(dir, kept).then(
            () => true,
            () => false,
          )
        )
          dir = kept;
      }
    }
    const layout = await OciLayout.open(dir);
    // buildah's result is tagged "stage"; BuildKit's OCI export holds one untagged entry.
    const tagged = (await layout.tags()).some((t) => t.tag === "stage");
    const img = await layoutArtifact(layout, await layout.resolve(tagged ? "stage" : undefined));
    if (img.kind !== "image")
      throw new PolyarchError({
        code: "E_MEDIA_TYPE",
        message: `${backend.name} returned an index for one stage`,
        hint: "This is a bug in polyarch.",
      });
    const base = await baseFromImage(img);
    const state = new StageState(platform, this.#spool!, base);
    return { state, reused, layout };
  }

  #image(platform: Platform, st: StageState, created: string): Image {
    const o = this.#o;
    const p = platformObject(platform);
    const cfg = { ...st.config };
    const labels = { ...(cfg.Labels ?? {}), ...o.labels };
    if (Object.keys(labels).length) cfg.Labels = labels;
    const base = st.base;
    const config: ImageConfig = {
      created,
      ...(st.author ? { author: st.author } : {}),
      architecture: p.architecture,
      os: p.os,
      ...(p.variant ? { variant: p.variant } : {}),
      config: cfg,
      rootfs: {
        type: "layers",
        diff_ids: [...(base?.layers ?? []).map((l) => l.diffId), ...st.layers.map((l) => l.diffId)],
      },
      history: [
        ...(base?.config.history ?? []),
        ...st.history.map((h) => ({ created, ...h, comment: "polyarch" })),
      ],
    };
    return imageFromConfig({
      platform,
      config,
      baseLayers: base?.layers ?? [],
      layers: st.layers,
      annotations: {
        [Annotation.CREATED]: created,
        ...o.annotations,
        ...(base?.name ? { [Annotation.BASE_NAME]: base.name } : {}),
        ...(base?.digest ? { [Annotation.BASE_DIGEST]: base.digest } : {}),
      },
    });
  }
}

/**
 * Whether a delegated stage's result may be reused by key: not when it or a stage it builds on
 * copies from an image (a tag can move) or adds a URL (its content can change).
 */
function cacheableStage(df: Dockerfile, stage: number): boolean {
  const names = new Set(df.stages.flatMap((s) => [String(s.index), ...(s.name ? [s.name] : [])]));
  return df.stages.slice(0, stage + 1).every((s) =>
    s.instructions.every((i) => {
      const from = i.flags.get("from")?.[0];
      if (
        (i.keyword === "COPY" || i.keyword === "ADD") &&
        from !== undefined &&
        !names.has(from.toLowerCase())
      )
        return false;
      return !(i.keyword === "ADD" && /(^|\s)(https?|git):\/\/|(^|\s)git@/.test(i.args));
    }),
  );
}
