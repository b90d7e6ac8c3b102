import os from "node:os";
import path from "node:path";
import { GoBuilder } from "../builder/go/index.js";
import type { BuildEvent } from "../builder/index.js";
import { PolyarchError } from "../errors.js";
import { compressedSize, platformImages } from "../image/index.js";
import { formatPlatform, hostPlatform, type Platform, parsePlatformList } from "../platform/index.js";
import { checkWritable, LayoutPublisher, type Publisher, TarballPublisher } from "../publish/index.js";
import { validateTag } from "../ref/index.js";
import { exec } from "../util/exec.js";
import { type CliIO, humanSize, table } from "./_io.js";
import { parsePairs, resolveCacheDir, resolveSourceDateEpoch } from "./_resolve.js";
import type { RegistryClient } from "../registry/index.js";
import type { BaseImage } from "../image/assemble.js";
import { formatReference } from "../ref/index.js";
import { platformTag } from "../tags/index.js";
import { parseLocation, parseOutput } from "./_targets.js";

export interface BuildFlags {
  platform?: string[];
  tag?: string[];
  output?: string;
  ldflags?: string;
  buildTags?: string;
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
  const platforms: Platform[] = flags.platform?.length
    ? parsePlatformList(flags.platform)
    : [{ ...hostPlatform(), os: "linux" }];
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
  const jobs = flags.jobs === undefined ? os.availableParallelism() : Number(flags.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--jobs "${flags.jobs}" is not a positive whole number`,
      hint: "Use --jobs 2, for example.",
    });
  }
  const epoch = await resolveSourceDateEpoch(io.env, dir, exec);
  if (target) {
    const outPath = path.resolve(io.cwd, target.kind === "oci" ? target.dir : target.file);
    await checkWritable(outPath, target.kind === "oci" ? "dir" : "file");
  }
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

  // The base, resolved per platform before any compile: a missing platform fails fast.
  let base: Map<string, BaseImage> | undefined;
  let baseLoc: ReturnType<typeof parseLocation> | undefined;
  // One registry client serves the base and the push, and is closed however the build ends.
  // Registry code is loaded only when a registry is involved: a local build starts sooner.
  const reg = flags.base || pushLoc ? await import("./_registry.js") : undefined;
  const client: RegistryClient | undefined = reg?.makeClient(io, flags.insecure);
  try {
    if (flags.base && client) {
      baseLoc = parseLocation(flags.base);
      if (baseLoc.kind === "tarball") {
        throw new PolyarchError({
          code: "E_INPUT",
          message: `--base cannot be a tarball (${flags.base})`,
          hint: "Use a registry reference or oci:<dir>[:tag].",
        });
      }
      const name = baseLoc.kind === "registry" ? formatReference(baseLoc.ref) : flags.base;
      const { baseImagesFor } = await import("../image/base.js");
      base = await baseImagesFor(await reg!.openLocation(baseLoc, client, signal), platforms, name);
    }
    const log = (s: string) => {
      if (!flags.quiet) io.stderr.write(`${s}\n`);
    };
    const started = performance.now();
    const builder = new GoBuilder({
      dir,
      mainPackage: ".",
      platforms,
      sourceDateEpoch: epoch.value,
      env: io.env,
      goBinary: io.env["POLYARCH_GO"] || "go",
      cacheDir: resolveCacheDir(io.env),
      jobs,
      ...(flags.ldflags ? { ldflags: flags.ldflags } : {}),
      ...(flags.buildTags ? { buildTags: flags.buildTags.split(",") } : {}),
      image,
      ...(base ? { base } : {}),
    });
    const times = new Map<string, number>();
    const onEvent = (e: BuildEvent) => {
      if (e.type === "resolve")
        log(
          `building ${e.target} for ${platforms.map(formatPlatform).join(", ")} (SOURCE_DATE_EPOCH ${epoch.value} from ${epoch.from})`,
        );
      if (e.type === "compile-done") {
        times.set(formatPlatform(e.platform), e.ms);
        log(`  compiled ${formatPlatform(e.platform)} in ${(e.ms / 1000).toFixed(1)}s`);
      }
      if (e.type === "layer" && e.platform === "all")
        log(
          `  static files layer ${e.digest.slice(0, 19)} ${humanSize(e.size)}${e.cached ? " (cached)" : ""}`,
        );
    };
    const { index, name } = await builder.build({ onEvent, ...(signal ? { signal } : {}) });

    // 2. Publish: blobs, manifests, index, then the tags.
    const opts = signal ? { signal } : {};
    const references: string[] = [];
    let digest = "";
    if (pushLoc?.kind === "registry" && client) {
      const repo = { registry: pushLoc.ref.registry, repository: pushLoc.ref.repository };
      // Base layers on the same registry are mounted from the base's repository, not uploaded.
      const mountFrom =
        baseLoc?.kind === "registry" &&
        baseLoc.ref.registry === repo.registry &&
        baseLoc.ref.repository !== repo.repository
          ? [baseLoc.ref.repository]
          : [];
      const { RegistryPublisher } = await import("../publish/registry.js");
      const pub = new RegistryPublisher(client, repo, { mountFrom });
      const r = await pub.publish(index, tags, opts);
      digest = r.digest;
      references.push(...r.references);
      if (platformTagStyle) {
        const pairs = platforms.flatMap((p) =>
          tags.map((t) => ({ platform: p, tag: platformTag(t, p, platformTagStyle) })),
        );
        references.push(...(await pub.tagPlatforms(index, pairs, signal)));
      }
      const st = pub.stats;
      log(
        `pushed to ${repo.registry}/${repo.repository}: ${st.blobsUploaded} blob${st.blobsUploaded === 1 ? "" : "s"} uploaded (${humanSize(st.bytesUploaded)}), ${st.blobsPresent} already there, ${st.blobsMounted} mounted; ${st.manifestsPut} manifests written, ${st.manifestsPresent} already there`,
      );
    }
    if (target) {
      const publisher: Publisher =
        target.kind === "oci"
          ? new LayoutPublisher(target.dir)
          : new TarballPublisher(target.file, {
              repository: name,
              mtime: epoch.value,
              dockerPlatform: { ...hostPlatform(), os: "linux" },
            });
      const r = await publisher.publish(index, tags, opts);
      digest = r.digest;
      references.push(...r.references);
    }
    const result = { digest, references };

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
    await client?.transport.close();
  }
}
