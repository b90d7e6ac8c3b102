import path from "node:path";
import type { BuildEvent } from "../builder/index.js";
import { PolyarchError } from "../errors.js";
import { compressedSize, platformImages } from "../image/index.js";
import { formatPlatform, hostPlatform, type Platform, parsePlatformList } from "../platform/index.js";
import { checkWritable } from "../publish/index.js";
import {
  type BuildRequest,
  type Destination,
  describeDestination,
  registryDestination,
} from "../orchestrate/index.js";
import { DockerfileBuilder } from "../builder/dockerfile/index.js";
import { describeDockerfilePlan } from "../builder/dockerfile/plan.js";
import { cacheRepository, validateTag } from "../ref/index.js";
import { exec } from "../util/exec.js";
import { type CliIO, humanSize, table } from "./_io.js";
import { parsePlatformFlag, parseJobs, parsePairs, resolveSourceDateEpoch } from "./_resolve.js";
import { makeOrchestrator } from "./_world.js";
import { cgoOptions } from "../builder/go/cgo.js";
import { platformTag } from "../tags/index.js";
import { parseLocation, parseOutput } from "../orchestrate/location.js";

export interface BuildFlags {
  platform?: string[];
  main?: string[];
  mediaTypes?: string;
  tag?: string[];
  output?: string;
  ldflags?: string;
  debugInfo?: boolean;
  buildTags?: string;
  cgo?: boolean | string;
  cc?: string[];
  user?: string;
  nonroot?: boolean;
  env?: string[];
  port?: string[];
  label?: string[];
  annotation?: string[];
  workdir?: string;
  jobs?: string;
  push?: string;
  base?: string;
  insecure?: string[];
  platformTags?: string;
  json?: boolean;
  quiet?: boolean;
  file?: string;
  buildArg?: string[];
  target?: string;
  dryRun?: boolean;
  builder?: string[];
  cache?: string;
}

/** Keep in step with the defaults main.ts shows in --help. */
export const DEFAULT_OUTPUT = "oci:out/oci";
export const DEFAULT_TAG = "latest";
const NONROOT = "65532:65532";

export async function runBuild(
  dirArg: string | undefined,
  flags: BuildFlags,
  io: CliIO,
  signal?: AbortSignal,
): Promise<number> {
  // 1. Resolve every input before any work, so bad input fails fast and writes nothing.
  const dir = path.resolve(io.cwd, dirArg ?? ".");
  if (flags.main?.length && flags.file)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--main adds Go main packages; a Dockerfile build (-f) has none",
      hint: "Leave out --main, or build the Go packages without -f.",
    });
  if (flags.file && flags.platform?.length === 1 && flags.platform[0]!.trim().toLowerCase() === "all")
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--platform all is for Go builds on a --base; a Dockerfile names its platforms with -p",
      hint: "List the platforms: -p linux/amd64,linux/arm64.",
    });
  // --platform all: every platform the base image has, read once the orchestrator is up.
  const { platforms: listed, all: allOfBase } = parsePlatformFlag(flags.platform, flags.base);
  let platforms: Platform[] = listed;
  // --push sends the image to a registry; an --output given as well also gets it.
  const pushLoc = flags.push ? parseLocation(flags.push) : undefined;
  if (pushLoc && pushLoc.kind !== "registry") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--push needs a registry reference, not "${flags.push}"`,
      hint: "Write it as registry/repository[:tag], e.g. --push ghcr.io/acme/api:1.2.3.",
    });
  }
  const target = pushLoc && !flags.output ? undefined : parseOutput(flags.output ?? DEFAULT_OUTPUT);
  const explicitTags = [
    ...(flags.tag ?? []).flatMap((t) => t.split(",")),
    ...(pushLoc?.kind === "registry" && pushLoc.ref.tag ? [pushLoc.ref.tag] : []),
  ];
  const tags = [...new Set(explicitTags.length ? explicitTags : [DEFAULT_TAG])].map((t) =>
    validateTag(t.trim()),
  );
  if (flags.user && flags.nonroot) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--user and --nonroot both set the image user",
      hint: "Use one of them.",
    });
  }
  const jobs = parseJobs(flags.jobs);
  if (flags.file && (flags.cgo !== undefined || flags.cc?.length))
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--cgo and --cc are for Go builds; a Dockerfile build (-f) compiles in its own stages",
      hint: "Leave them out, or build the Go package without -f.",
    });
  const cgo = flags.file
    ? undefined
    : cgoOptions({ cgo: flags.cgo, cc: flags.cc ? parsePairs(flags.cc, "cc") : undefined }, io.env, {
        cgo: "--cgo",
        cc: "--cc",
      });
  const epoch = await resolveSourceDateEpoch(io.env, dir, exec);
  // A dry run writes nothing, so where it would write is not checked.
  if (target && !flags.dryRun) {
    const outPath = path.resolve(io.cwd, target.kind === "oci" ? target.dir : target.file);
    await checkWritable(outPath, target.kind === "oci" ? "dir" : "file");
  }
  if (flags.mediaTypes !== undefined && flags.mediaTypes !== "oci" && flags.mediaTypes !== "docker")
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--media-types "${flags.mediaTypes}" is neither oci nor docker`,
      hint: "Use --media-types docker for Docker v2.2 manifests (old docker clients), or leave it out for OCI.",
    });
  const platformTagStyle = flags.platformTags;
  if (platformTagStyle !== undefined && platformTagStyle !== "os-arch" && platformTagStyle !== "arch") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--platform-tags "${String(platformTagStyle)}" is not a style polyarch knows`,
      hint: "Use --platform-tags os-arch (v1-linux-arm64) or --platform-tags arch (v1-arm64).",
    });
  }
  const image = {
    env: Object.entries(parsePairs(flags.env ?? [], "env")).map(([k, v]) => `${k}=${v}`),
    exposedPorts: (flags.port ?? []).flatMap((p) => p.split(",")),
    labels: parsePairs(flags.label ?? [], "label"),
    annotations: parsePairs(flags.annotation ?? [], "annotation"),
    ...(flags.user || flags.nonroot ? { user: flags.user ?? NONROOT } : {}),
    ...(flags.workdir ? { workingDir: flags.workdir } : {}),
  };

  const destinations: Destination[] = [];
  if (pushLoc?.kind === "registry") destinations.push(registryDestination(pushLoc.ref));
  const builders: Record<string, string> = {};
  for (const b of flags.builder ?? []) {
    const eq = b.indexOf("=");
    if (eq <= 0)
      throw new PolyarchError({
        code: "E_INPUT",
        message: `--builder "${b}" is not <platform>=<endpoint>`,
        hint: "Write --builder linux/arm64=tcp://arm-node:1234 (a BuildKit daemon), --builder linux/arm64=docker+ssh://user@arm-node (a Docker engine) or --builder linux/amd64=buildah.",
      });
    builders[formatPlatform(parsePlatformList([b.slice(0, eq)])[0]!)] = b.slice(eq + 1);
  }
  const orch = makeOrchestrator(io, {
    ...(flags.insecure ? { insecure: flags.insecure } : {}),
    jobs,
    ...(Object.keys(builders).length ? { builders } : {}),
  });
  try {
    if (allOfBase) platforms = await orch.basePlatforms(flags.base!, signal);
    const log = (s: string) => {
      if (!flags.quiet) io.stderr.write(`${s}\n`);
    };
    const started = performance.now();
    const times = new Map<string, number>();
    const onEvent = (e: BuildEvent) => {
      if (e.type === "resolve")
        log(
          `building ${e.target} for ${platforms.map(formatPlatform).join(", ")} (SOURCE_DATE_EPOCH ${epoch.value} from ${epoch.from})`,
        );
      if (e.type === "warning") io.stderr.write(`warning: ${e.message}\n`);
      if (e.type === "note") log(`  ${e.message}`);
      if (e.type === "step-done") {
        const p = formatPlatform(e.platform);
        times.set(p, (times.get(p) ?? 0) + e.ms);
        log(
          `  ${e.step === "compile" ? "compiled" : `${e.step} done for`} ${p} in ${(e.ms / 1000).toFixed(1)}s${e.where && e.where !== "native" ? ` on ${e.where}` : ""}`,
        );
      }
      if (e.type === "layer" && e.platform === "all")
        log(
          `  static files layer ${e.digest.slice(0, 19)} ${humanSize(e.size)}${e.cached ? " (cached)" : ""}`,
        );
    };
    const request: BuildRequest = {
      source: flags.file
        ? {
            kind: "dockerfile",
            dockerfile: path.resolve(io.cwd, flags.file),
            context: dir,
            buildArgs: parsePairs(flags.buildArg ?? [], "build-arg"),
            ...(flags.target ? { target: flags.target } : {}),
            ...(flags.cache ? { cache: cacheRepository(flags.cache) } : {}),
          }
        : {
            kind: "go",
            dir,
            main: ".",
            ...(flags.main?.length ? { extraMains: flags.main } : {}),
            ...(flags.ldflags ? { ldflags: flags.ldflags } : {}),
            ...(flags.debugInfo ? { debugInfo: true } : {}),
            ...(flags.buildTags ? { buildTags: flags.buildTags.split(",") } : {}),
            ...(cgo ? { cgo } : {}),
          },
      platforms,
      sourceDateEpoch: epoch.value,
      image,
      ...(flags.base ? { base: flags.base } : {}),
      ...(flags.mediaTypes === "docker" ? { mediaTypes: "docker" as const } : {}),
    };
    if (flags.dryRun) {
      const b = await orch.builder(request);
      if (!(b instanceof DockerfileBuilder))
        throw new PolyarchError({
          code: "E_INPUT",
          message: "build --dry-run shows a Dockerfile's plan; it needs -f",
          hint: "For Go services, polyarch run --dry-run prints the whole pipeline's plan.",
        });
      const lines = describeDockerfilePlan(await b.dockerfile(), await b.plan());
      io.stdout.write(`${lines.join("\n")}\n(dry run: nothing was built or published)\n`);
      return 0;
    }
    // Registry pushes get each new layer while the other platforms still build.
    const { index, name, mountFrom } = await orch.build(request, {
      onEvent,
      stageTo: destinations,
      ...(signal ? { signal } : {}),
    });

    // 2. Publish: blobs, manifests, index, then the tags — the registry first, then the output.
    if (target)
      destinations.push(
        target.kind === "oci"
          ? { kind: "oci", dir: target.dir }
          : {
              kind: "tarball",
              file: target.file,
              repository: name,
              mtime: epoch.value,
              dockerPlatform: { ...hostPlatform(), os: "linux" },
            },
      );
    const published = await orch.publish(
      index,
      {
        destinations,
        tags,
        ...(platformTagStyle
          ? {
              platformTags: platforms.flatMap((p) =>
                tags.map((t) => ({ platform: p, tag: platformTag(t, p, platformTagStyle) })),
              ),
            }
          : {}),
        ...(mountFrom ? { mountFrom: [mountFrom] } : {}),
      },
      signal ? { signal } : {},
    );
    for (const p of published) {
      const st = p.stats;
      if (st)
        log(
          `pushed to ${describeDestination(p.destination)}: ${st.blobsUploaded} blob${st.blobsUploaded === 1 ? "" : "s"} uploaded (${humanSize(st.bytesUploaded)}${st.blobsUploadedEarly ? `, ${st.blobsUploadedEarly} while building` : ""}), ${st.blobsPresent} already there, ${st.blobsMounted} mounted; ${st.manifestsPut} manifests written, ${st.manifestsPresent} already there`,
        );
    }
    const result = {
      digest: published.at(-1)?.digest ?? (await index.descriptor()).digest,
      references: published.flatMap((p) => p.references),
    };

    // 3. Report: references on stdout, a summary on stderr.
    const rows = [["PLATFORM", "DIGEST", "SIZE", "COMPILE"]];
    const summary: { platform: string; digest: string; size: number }[] = [];
    for (const { descriptor, image: img } of await platformImages(index)) {
      const p = formatPlatform(descriptor.platform!);
      const size = await compressedSize(img);
      summary.push({ platform: p, digest: descriptor.digest, size });
      rows.push([p, descriptor.digest, humanSize(size), `${((times.get(p) ?? 0) / 1000).toFixed(1)}s`]);
    }
    log(table(rows));
    log(
      `index ${result.digest} (${platforms.length} platform${platforms.length === 1 ? "" : "s"}) in ${((performance.now() - started) / 1000).toFixed(1)}s`,
    );
    if (flags.json) {
      io.stdout.write(
        `${JSON.stringify({ digest: result.digest, references: result.references, tags, platforms: summary }, null, 2)}\n`,
      );
    } else {
      for (const r of result.references) io.stdout.write(`${r}\n`);
    }
    return 0;
  } finally {
    await orch.close();
  }
}
