/**
 * The pipeline behind `polyarch run`: a plan computed once from the resolved config and git,
 * then stages — lint, test, build (every image × platform), publish (tags last, all or nothing
 * per image). `--dry-run` prints the plan and stops; the real run executes exactly that plan.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import type { BuildEvent } from "../builder/index.js";
import type { CgoOptions } from "../builder/go/cgo.js";
import type { ResolvedConfig } from "../config/index.js";
import { PolyarchError } from "../errors.js";
import type { GitInfo } from "../git/index.js";
import { compressedSize, type Index, platformImages } from "../image/index.js";
import { Annotation } from "../manifest/index.js";
import { formatPlatform, type Platform } from "../platform/index.js";
import {
  type BuildRequest,
  type Destination,
  describeDestination,
  type Orchestrator,
  registryDestination,
} from "../orchestrate/index.js";
import type { Repo } from "../registry/index.js";
import { expandTags, platformTag, sanitizeTag, semverOf } from "../tags/index.js";
import { type Reference, validateTag } from "../ref/index.js";

export type Stage = "lint" | "test" | "build" | "publish";
export const STAGES: Stage[] = ["lint", "test", "build", "publish"];

export interface PlannedImage {
  name: string;
  dir: string;
  main: string;
  extraMains: string[];
  platforms: Platform[];
  base: string | undefined;
  /** registry/repository, or an OCI layout directory when no registry is set. */
  target: { kind: "registry"; ref: Reference } | { kind: "oci"; dir: string };
  tags: string[];
  platformTags: { platform: Platform; tag: string }[];
  ldflags: string | undefined;
  debugInfo: boolean;
  cgo: CgoOptions | undefined;
  annotations: Record<string, string>;
  env: string[];
  ports: string[];
  labels: Record<string, string>;
  user: string | undefined;
  entrypoint: string[] | undefined;
  /** A Dockerfile image (lint and test, which are Go commands, do not run for it). */
  dockerfile?: {
    file: string;
    context: string;
    target: string | undefined;
    buildArgs: Record<string, string>;
    cache: string | undefined;
  };
}

export interface Plan {
  stages: Stage[];
  lint: string;
  test: string;
  git: GitInfo;
  sourceDateEpoch: number;
  version: string;
  images: PlannedImage[];
}

/** {{version}}, {{commit}}, {{shortCommit}}, {{branch}}, {{date}} in ldflags, from git. */
export function expandTemplate(s: string, vars: Record<string, string>): string {
  return s.replace(/\{\{\s*(\w+)\s*\}\}/g, (m, k: string) => {
    const v = vars[k];
    if (v === undefined) {
      throw new PolyarchError({
        code: "E_CONFIG",
        message: `unknown template variable ${m} in ldflags`,
        hint: `Known: ${Object.keys(vars)
          .map((x) => `{{${x}}}`)
          .join(", ")}.`,
      });
    }
    return v;
  });
}

export function planRun(
  c: ResolvedConfig,
  git: GitInfo,
  opts: { stages: Stage[]; sourceDateEpoch: number; outDir: string; tagSuffix?: string },
): Plan {
  // semver is skipped on untagged commits (as metadata-action does), unless it is the only rule or
  // HEAD carries a version-looking tag that is not semver (v1.2): then it is an error.
  const onlySemver = c.tags.value.every((t) => t.type === "semver");
  const versionLike = git.tags.some((t) => /^v?\d/.test(t));
  const ruleTags = expandTags(c.tags.value, git, { requireSemver: onlySemver || versionLike });
  // A suffix per CI job (split builds: 1.2.3-arm64 from the arm64 runner) keeps jobs from overwriting each other.
  const tags = opts.tagSuffix
    ? ruleTags.map((t) => validateTag(sanitizeTag(`${t}${opts.tagSuffix}`)))
    : ruleTags;
  if (tags.length === 0) {
    throw new PolyarchError({
      code: "E_TAG",
      message: "the tag rules give no tag for this checkout",
      hint: `Rules: ${c.tags.value.map((t) => t.type).join(", ")}; add commit-short or raw so every build has a tag.`,
    });
  }
  const semver = semverOf(git.tags);
  const version = semver?.version ?? git.commit.slice(0, 8);
  const vars = {
    version,
    commit: git.commit,
    shortCommit: git.commit.slice(0, 8),
    branch: git.branch ?? "",
    date: new Date(opts.sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, "Z"),
  };
  const annotations: Record<string, string> = {
    [Annotation.REVISION]: git.commit,
    [Annotation.VERSION]: version,
  };
  if (git.remote) annotations[Annotation.SOURCE] = git.remote;
  const images = c.images.map((im): PlannedImage => {
    const platforms = im.platforms.value;
    return {
      name: im.name,
      dir: im.dir,
      main: im.main,
      extraMains: im.extraMains,
      platforms,
      base: im.base,
      target: im.reference
        ? { kind: "registry", ref: im.reference }
        : { kind: "oci", dir: path.join(opts.outDir, im.name) },
      tags,
      platformTags: c.platformTags
        ? platforms.flatMap((p) =>
            tags.map((t) => ({ platform: p, tag: platformTag(t, p, c.platformTags!) })),
          )
        : [],
      ldflags: im.ldflags ? expandTemplate(im.ldflags, vars) : undefined,
      debugInfo: im.debugInfo,
      cgo: im.cgo,
      annotations: { ...annotations, [Annotation.TITLE]: im.name },
      env: Object.entries(im.env).map(([k, v]) => `${k}=${v}`),
      ports: im.ports,
      labels: im.labels,
      user: im.user,
      entrypoint: im.entrypoint,
      ...(im.dockerfile ? { dockerfile: im.dockerfile } : {}),
    };
  });
  return {
    stages: opts.stages,
    lint: c.lint.value,
    test: c.test.value,
    git,
    sourceDateEpoch: opts.sourceDateEpoch,
    version,
    images,
  };
}

/** Every step the run will take, one per line: what --dry-run prints and the run then does. */
export function describePlan(plan: Plan): string[] {
  const lines: string[] = [];
  const g = plan.git;
  lines.push(
    `commit ${g.commit}${g.branch ? ` on ${g.branch}` : " (detached)"}${g.dirty ? " (dirty)" : ""}, version ${plan.version}, SOURCE_DATE_EPOCH ${plan.sourceDateEpoch}`,
  );
  for (const im of plan.images) {
    const where =
      im.target.kind === "registry"
        ? `${im.target.ref.registry}/${im.target.ref.repository}`
        : `oci:${im.target.dir}`;
    if (plan.stages.includes("lint") && !im.dockerfile)
      lines.push(`lint    ${im.name}: ${plan.lint} (in ${im.dir})`);
    if (plan.stages.includes("test") && !im.dockerfile)
      lines.push(`test    ${im.name}: ${plan.test} (in ${im.dir})`);
    if (plan.stages.includes("build"))
      for (const p of im.platforms)
        lines.push(
          `build   ${im.name} ${formatPlatform(p)}${im.dockerfile ? ` from ${im.dockerfile.file}${im.dockerfile.target ? ` (target ${im.dockerfile.target})` : ""}` : ""}${im.base ? ` on ${im.base}` : ""}`,
        );
    if (plan.stages.includes("publish")) {
      for (const t of im.tags) lines.push(`publish ${im.name} → ${where}:${t}`);
      for (const pt of im.platformTags)
        lines.push(`publish ${im.name} ${formatPlatform(pt.platform)} → ${where}:${pt.tag}`);
    }
  }
  return lines;
}

export type RunEvent =
  | { type: "stage"; stage: Stage; image: string; state: "start" | "done"; ms?: number }
  | { type: "build"; image: string; event: BuildEvent }
  | { type: "published"; image: string; reference: string; digest: string; uploadedBytes?: number };

export interface ImageResult {
  name: string;
  digest: string;
  references: string[];
  platforms: { platform: string; digest: string; size: number; ms: number }[];
}

export interface RunDeps {
  /** Builders and publishers come from here (its compile slots are shared by every image). */
  orch: Orchestrator;
  /** The environment the lint and test commands run with, complete. */
  stageEnv: Record<string, string | undefined>;
  signal?: AbortSignal;
  onEvent?: (e: RunEvent) => void;
  onOutput?: (image: string, stage: Stage, chunk: string) => void;
}

function runShell(
  command: string,
  cwd: string,
  env: Record<string, string | undefined>,
  onOutput: (s: string) => void,
  signal?: AbortSignal,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], {
      cwd,
      env: env,
      stdio: ["ignore", "pipe", "pipe"],
      ...(signal ? { signal } : {}),
    });
    let output = "";
    const take = (c: Buffer) => {
      const s = c.toString();
      output += s;
      onOutput(s);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

/** What the orchestrator builds for a planned image. */
export function buildRequestFor(im: PlannedImage, sourceDateEpoch: number): BuildRequest {
  return {
    source: im.dockerfile
      ? {
          kind: "dockerfile",
          dockerfile: im.dockerfile.file,
          context: im.dockerfile.context,
          buildArgs: im.dockerfile.buildArgs,
          ...(im.dockerfile.target ? { target: im.dockerfile.target } : {}),
          ...(im.dockerfile.cache ? { cache: im.dockerfile.cache } : {}),
        }
      : {
          kind: "go",
          dir: im.dir,
          main: im.main,
          ...(im.extraMains.length ? { extraMains: im.extraMains } : {}),
          ...(im.ldflags ? { ldflags: im.ldflags } : {}),
          ...(im.debugInfo ? { debugInfo: true } : {}),
          ...(im.cgo ? { cgo: im.cgo } : {}),
        },
    platforms: im.platforms,
    sourceDateEpoch,
    image: {
      env: im.env,
      exposedPorts: im.ports,
      labels: im.labels,
      annotations: im.annotations,
      ...(im.user ? { user: im.user } : {}),
      ...(im.entrypoint ? { entrypoint: im.entrypoint } : {}),
    },
    ...(im.base ? { base: im.base } : {}),
  };
}

/** Executes a plan: every stage for every image; nothing is published unless every build succeeded. */
export async function executeRun(plan: Plan, deps: RunDeps): Promise<ImageResult[]> {
  const emit = deps.onEvent ?? (() => {});
  for (const stage of ["lint", "test"] as const) {
    if (!plan.stages.includes(stage)) continue;
    for (const im of plan.images) {
      if (im.dockerfile) continue; // lint and test are Go commands; a Dockerfile has its own
      const t0 = performance.now();
      emit({ type: "stage", stage, image: im.name, state: "start" });
      const command = stage === "lint" ? plan.lint : plan.test;
      const r = await runShell(
        command,
        im.dir,
        // A cgo image's tests link its C code on this machine (its own compiler, natively).
        im.cgo ? { ...deps.stageEnv, CGO_ENABLED: "1" } : deps.stageEnv,
        (s) => deps.onOutput?.(im.name, stage, s),
        deps.signal,
      );
      if (r.code !== 0) {
        throw new PolyarchError({
          code: "E_STAGE",
          message: `${stage} failed for image ${im.name}: \`${command}\` exited with ${r.code} in ${im.dir}:\n${r.output.trimEnd().split("\n").slice(-30).join("\n")}`,
          hint: `Fix what ${stage} reports; nothing was built or published.`,
        });
      }
      emit({ type: "stage", stage, image: im.name, state: "done", ms: performance.now() - t0 });
    }
  }
  if (!plan.stages.includes("build")) return [];
  // Build every image first: a failing platform stops the run before any tag moves. Images
  // build at the same time, their compiles sharing one limit of `jobs` (the cores).
  type BuiltImage = { im: PlannedImage; index: Index; times: Map<string, number>; mountFrom?: Repo };
  const built: BuiltImage[] = await Promise.all(
    plan.images.map(async (im): Promise<BuiltImage> => {
      const t0 = performance.now();
      emit({ type: "stage", stage: "build", image: im.name, state: "start" });
      const times = new Map<string, number>();
      const { index, mountFrom } = await deps.orch.build(buildRequestFor(im, plan.sourceDateEpoch), {
        // A registry target gets each new layer while the other platforms and images still build.
        ...(plan.stages.includes("publish") && im.target.kind === "registry"
          ? { stageTo: [registryDestination(im.target.ref)] }
          : {}),
        onEvent: (e) => {
          if (e.type === "step-done")
            times.set(formatPlatform(e.platform), (times.get(formatPlatform(e.platform)) ?? 0) + e.ms);
          emit({ type: "build", image: im.name, event: e });
        },
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
      emit({ type: "stage", stage: "build", image: im.name, state: "done", ms: performance.now() - t0 });
      return { im, index, times, ...(mountFrom ? { mountFrom } : {}) };
    }),
  );
  const results: ImageResult[] = [];
  for (const { im, index, times, mountFrom } of built) {
    const platforms = await Promise.all(
      (await platformImages(index)).map(async ({ descriptor, image }) => ({
        platform: formatPlatform(descriptor.platform!),
        digest: descriptor.digest,
        size: await compressedSize(image),
        ms: times.get(formatPlatform(descriptor.platform!)) ?? 0,
      })),
    );
    const digest = (await index.descriptor()).digest;
    if (!plan.stages.includes("publish")) {
      results.push({ name: im.name, digest, references: [], platforms });
      continue;
    }
    const t0 = performance.now();
    emit({ type: "stage", stage: "publish", image: im.name, state: "start" });
    const destination: Destination =
      im.target.kind === "registry"
        ? registryDestination(im.target.ref)
        : { kind: "oci", dir: im.target.dir };
    const [published] = await deps.orch.publish(
      index,
      {
        destinations: [destination],
        tags: im.tags,
        platformTags: im.platformTags,
        ...(mountFrom ? { mountFrom: [mountFrom] } : {}),
      },
      deps.signal ? { signal: deps.signal } : {},
    );
    const references = published!.references;
    emit({
      type: "published",
      image: im.name,
      reference: describeDestination(destination),
      digest,
      ...(published!.stats ? { uploadedBytes: published!.stats.bytesUploaded } : {}),
    });
    emit({ type: "stage", stage: "publish", image: im.name, state: "done", ms: performance.now() - t0 });
    results.push({ name: im.name, digest, references, platforms });
  }
  return results;
}
