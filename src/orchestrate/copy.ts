/**
 * Copy and mirror as source → sink, with the orchestrator's reader and publishers: raw
 * manifest bytes go unchanged, so digests stay the same (all platforms), and a destination
 * already at the source's digest is left alone.
 */
import { selectPlatforms } from "../copy/index.js";
import type { MirrorEntry } from "../copy/mirror.js";
import type { Digest } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import type { Platform } from "../platform/index.js";
import type { PushStats } from "../publish/index.js";
import { formatReference, validateTag } from "../ref/index.js";
import { registryArtifact } from "../registry/index.js";
import { type Destination, type Orchestrator, registryDestination } from "./index.js";
import type { Location } from "./location.js";

export interface CopyResult {
  digest: Digest;
  references: string[];
  /** The destination tag already named this digest: nothing was written. */
  upToDate: boolean;
  stats?: PushStats;
}

function tagOf(loc: Location): string | undefined {
  return loc.kind === "oci" ? loc.tag : loc.kind === "registry" ? loc.ref.tag : undefined;
}

/** Copies an image or index between registries and layouts (all platforms unless some are picked). */
export async function copy(
  orch: Orchestrator,
  src: Location,
  dst: Location,
  opts: { platforms?: readonly Platform[]; signal?: AbortSignal; verb?: string } = {},
): Promise<CopyResult> {
  const verb = opts.verb ?? "copy";
  if (src.kind === "tarball" || dst.kind === "tarball") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `${verb} works between registries and OCI layouts, not tarballs`,
      hint: "Use oci:<dir>[:tag] or registry/repo:tag on both sides.",
    });
  }
  const tag = validateTag(tagOf(dst) ?? tagOf(src) ?? "latest");
  const srcText = src.kind === "registry" ? src.text : `oci:${src.dir}${src.tag ? `:${src.tag}` : ""}`;
  const source = await selectPlatforms(await orch.open(src, opts.signal), opts.platforms ?? [], srcText);
  const desc = await source.descriptor();
  const signal = opts.signal ? { signal: opts.signal } : {};
  if (dst.kind === "oci") {
    const [r] = await orch.publish(
      source,
      { destinations: [{ kind: "oci", dir: dst.dir }], tags: [tag] },
      signal,
    );
    return { digest: r!.digest, references: r!.references, upToDate: false };
  }
  if (dst.ref.digest && dst.ref.digest !== desc.digest) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `${dst.text} names digest ${dst.ref.digest}, but the copy has digest ${desc.digest}`,
      hint: "Leave the digest out of the destination, or copy all platforms to keep the source digest.",
    });
  }
  const dest = registryDestination(dst.ref) as Extract<Destination, { kind: "registry" }>;
  // Skip the work when the destination tag already points at this digest (mirror-style).
  if (!dst.ref.digest) {
    const existing = await orch.client
      .headManifest({ ...dest.repo, tag }, opts.signal)
      .catch(() => undefined);
    if (existing?.digest === desc.digest) {
      return {
        digest: desc.digest,
        references: [formatReference({ ...dest.repo, tag, digest: desc.digest })],
        upToDate: true,
      };
    }
  }
  const mountFrom =
    src.kind === "registry" ? [{ registry: src.ref.registry, repository: src.ref.repository }] : [];
  const [r] = await orch.publish(
    source,
    { destinations: [dest], tags: dst.ref.digest ? [] : [tag], mountFrom },
    signal,
  );
  return {
    digest: r!.digest,
    references: r!.references,
    upToDate: false,
    ...(r!.stats ? { stats: r!.stats } : {}),
  };
}

export interface MirrorOutcome {
  digest: Digest;
  result: "up to date" | "would copy" | "would update" | "copied";
  stats?: PushStats;
}

/**
 * Mirrors one list entry: HEAD both sides (an unchanged image costs two requests and no pull
 * quota), then copies all platforms by the digest the source named, verified as it is read.
 */
export async function mirrorOne(
  orch: Orchestrator,
  e: MirrorEntry,
  opts: { dryRun?: boolean; signal?: AbortSignal } = {},
): Promise<MirrorOutcome> {
  const client = orch.client;
  const head =
    (await client.headManifest(e.source, opts.signal)) ?? (await client.getManifest(e.source, opts.signal));
  const digest = head.digest;
  const have = await client.headManifest(e.destination, opts.signal).catch(() => undefined);
  if (have?.digest === digest) return { digest, result: "up to date" };
  if (opts.dryRun) return { digest, result: have ? "would update" : "would copy" };
  const source = await registryArtifact(client, { ...e.source, digest }, undefined, opts.signal);
  const [r] = await orch.publish(
    source,
    {
      destinations: [registryDestination(e.destination)],
      tags: e.destination.tag ? [e.destination.tag] : [],
      mountFrom: [{ registry: e.source.registry, repository: e.source.repository }],
    },
    opts.signal ? { signal: opts.signal } : {},
  );
  return { digest, result: "copied", ...(r!.stats ? { stats: r!.stats } : {}) };
}
