/**
 * Builds new images and indexes from layers polyarch made. Every document is built with a
 * fixed key order and serialised once; the raw bytes are what gets stored and pushed.
 */
import { createReadStream } from "node:fs";
import { type Descriptor, type Digest, sha256, verifyBytes } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import {
  Annotation,
  descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MediaType,
  platformObject,
  serialize,
  sortedRecord,
} from "../manifest/index.js";
import { comparePlatforms, formatPlatform, type Platform } from "../platform/index.js";
import { type Artifact, type Image, type Index, imageFromCore, indexFromCore } from "./index.js";

/** A layer whose compressed bytes are in a file. */
export interface FileLayer extends Descriptor {
  diffId: Digest;
  file: string;
  /** What made it, for the config history. */
  createdBy: string;
}

/** A layer of a base image: bytes come from wherever the base lives (registry, layout). */
export interface BaseLayer extends Descriptor {
  diffId: Digest;
  open: () => AsyncIterable<Uint8Array>;
}

/** The base an image is built on (`scratch` when absent). */
export interface BaseImage {
  config: ImageConfig;
  layers: BaseLayer[];
  /** For org.opencontainers.image.base.name / base.digest. */
  name?: string;
  digest?: Digest;
}

export interface ImageSpec {
  platform: Platform;
  base?: BaseImage;
  layers: FileLayer[];
  /** RFC 3339 time for config.created and history (from SOURCE_DATE_EPOCH). */
  created: string;
  entrypoint: string[];
  cmd?: string[];
  env: string[];
  user?: string;
  workingDir?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function isoTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

function normalisePort(p: string): string {
  const m = /^([0-9]{1,5})(?:\/(tcp|udp|sctp))?$/.exec(p.trim().toLowerCase());
  const n = m ? Number(m[1]) : 0;
  if (!m || n < 1 || n > 65535) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `invalid port "${p}"`,
      hint: "Write ports as 8080 or 8080/tcp (udp and sctp also work).",
    });
  }
  return `${n}/${m[2] ?? "tcp"}`;
}

/** Env lists merged by key: later entries replace earlier ones, order of first appearance kept. */
function mergeEnv(...lists: string[][]): string[] {
  const out = new Map<string, string>();
  for (const list of lists)
    for (const e of list) out.set(e.includes("=") ? e.slice(0, e.indexOf("=")) : e, e);
  return [...out.values()];
}

export function assembleImage(spec: ImageSpec): Image {
  const baseCfg = spec.base?.config.config ?? {};
  const cfg: NonNullable<ImageConfig["config"]> = {};
  const user = spec.user ?? baseCfg.User;
  if (user) cfg.User = user;
  const ports = [...Object.keys(baseCfg.ExposedPorts ?? {}), ...(spec.exposedPorts ?? [])];
  if (ports.length) {
    cfg.ExposedPorts = {};
    for (const p of [...new Set(ports.map(normalisePort))].sort()) cfg.ExposedPorts[p] = {};
  }
  cfg.Env = mergeEnv(baseCfg.Env ?? [], spec.env);
  cfg.Entrypoint = spec.entrypoint;
  // A new entrypoint makes the base's Cmd meaningless (ko and docker do the same).
  if (spec.cmd) cfg.Cmd = spec.cmd;
  cfg.WorkingDir = spec.workingDir ?? (baseCfg.WorkingDir || "/");
  const labels = { ...(baseCfg.Labels ?? {}), ...(spec.labels ?? {}) };
  if (Object.keys(labels).length) cfg.Labels = sortedRecord(labels);
  if (baseCfg.StopSignal) cfg.StopSignal = baseCfg.StopSignal;
  const p = platformObject(spec.platform);
  const baseLayers = spec.base?.layers ?? [];
  const config: ImageConfig = {
    created: spec.created,
    architecture: p.architecture,
    os: p.os,
    ...(p["os.version"] ? { "os.version": p["os.version"] } : {}),
    ...(p.variant ? { variant: p.variant } : {}),
    config: cfg,
    rootfs: {
      type: "layers",
      diff_ids: [...baseLayers.map((l) => l.diffId), ...spec.layers.map((l) => l.diffId)],
    },
    history: [
      ...(spec.base?.config.history ?? []),
      ...spec.layers.map((l) => ({ created: spec.created, created_by: l.createdBy, comment: "polyarch" })),
    ],
  };
  return imageFromConfig({
    platform: spec.platform,
    config,
    baseLayers,
    layers: spec.layers,
    annotations: {
      ...(spec.annotations ?? {}),
      ...(spec.base?.name ? { [Annotation.BASE_NAME]: spec.base.name } : {}),
      ...(spec.base?.digest ? { [Annotation.BASE_DIGEST]: spec.base.digest } : {}),
    },
  });
}

/**
 * An image from a finished config: the manifest over the base's layers and the new ones,
 * serialised once. Every builder ends here (the Go builder through assembleImage).
 */
export function imageFromConfig(spec: {
  platform: Platform;
  config: ImageConfig;
  baseLayers: readonly BaseLayer[];
  layers: readonly FileLayer[];
  annotations: Record<string, string>;
}): Image {
  const { config, baseLayers } = spec;
  const rawConfig = serialize(config);
  const configDesc: Descriptor = {
    mediaType: MediaType.OCI_CONFIG,
    digest: sha256(rawConfig),
    size: rawConfig.byteLength,
  };
  const annotations: Record<string, string> = { ...spec.annotations };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: configDesc,
    layers: [
      // Docker's gzip layer type names the same bytes as OCI's; the manifest is OCI, so is the type.
      ...baseLayers.map((l) =>
        descriptor({
          mediaType: l.mediaType === MediaType.DOCKER_LAYER_GZIP ? MediaType.OCI_LAYER_GZIP : l.mediaType,
          digest: l.digest,
          size: l.size,
          ...(l.urls ? { urls: l.urls } : {}),
        }),
      ),
      ...spec.layers.map((l) => descriptor({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ],
  };
  if (Object.keys(annotations).length) manifest.annotations = sortedRecord(annotations);
  const rawManifest = serialize(manifest);
  const files = new Map<Digest, FileLayer>(spec.layers.map((l) => [l.digest, l]));
  const fromBase = new Map<Digest, BaseLayer>(baseLayers.map((l) => [l.digest, l]));
  const readBytes = async (d: Descriptor): Promise<Uint8Array> => {
    if (d.digest === configDesc.digest) return rawConfig;
    throw new PolyarchError({
      code: "E_INTERNAL",
      message: `blob ${d.digest} is not a config`,
      hint: "This is a bug in polyarch.",
    });
  };
  return imageFromCore({
    rawManifest,
    mediaType: MediaType.OCI_MANIFEST,
    platform: spec.platform,
    readBytes,
    file: (d) => files.get(d.digest)?.file,
    open: (d) => {
      if (d.digest === configDesc.digest) {
        verifyBytes(rawConfig, d, "image config");
        return (async function* () {
          yield rawConfig;
        })();
      }
      const f = files.get(d.digest);
      // Layers polyarch wrote itself are hashed once, by the sink that stores them (layout,
      // registry and tarball sinks all check digest and size), not here as well.
      if (f) return createReadStream(f.file, { highWaterMark: 1 << 20 });
      const b = fromBase.get(d.digest);
      if (b) return b.open();
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `blob ${d.digest} is not part of this image`,
        hint: "This is a bug in polyarch.",
      });
    },
  });
}

/** An index over images, ordered by platform (reliability.md REP-06), with annotations. */
export async function assembleIndex(
  images: readonly Image[],
  annotations?: Record<string, string>,
): Promise<Index> {
  const entries: { d: Descriptor; image: Image }[] = [];
  for (const image of images) {
    const d = await image.descriptor();
    if (!d.platform)
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: "an image in an index needs a platform",
        hint: "This is a bug in polyarch.",
      });
    entries.push({ d, image });
  }
  entries.sort((a, b) => comparePlatforms(a.d.platform!, b.d.platform!));
  for (let i = 1; i < entries.length; i++) {
    if (comparePlatforms(entries[i - 1]!.d.platform!, entries[i]!.d.platform!) === 0) {
      throw new PolyarchError({
        code: "E_PLATFORM",
        message: `platform ${formatPlatform(entries[i]!.d.platform!)} appears twice`,
        hint: "List each platform once.",
      });
    }
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: entries.map((e) => descriptor(e.d)),
  };
  if (annotations && Object.keys(annotations).length) index.annotations = sortedRecord(annotations);
  const rawManifest = serialize(index);
  const byDigest = new Map<Digest, Artifact>(entries.map((e) => [e.d.digest, e.image]));
  return indexFromCore({
    rawManifest,
    mediaType: MediaType.OCI_INDEX,
    child: async (d) => {
      const c = byDigest.get(d.digest);
      if (!c)
        throw new PolyarchError({
          code: "E_NOT_FOUND",
          message: `${d.digest} is not in this index`,
          hint: "This is a bug in polyarch.",
        });
      return c;
    },
  });
}

export { Annotation };
