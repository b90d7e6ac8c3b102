/**
 * Builds new images and indexes from layers polyarch made. Every document is built with a
 * fixed key order and serialised once; the raw bytes are what gets stored and pushed.
 */
import { createReadStream } from "node:fs";
import { type Descriptor, type Digest, sha256, verifyBytes, verifyingStream } from "../digest/index.js";
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

export interface ImageSpec {
  platform: Platform;
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

export function assembleImage(spec: ImageSpec): Image {
  const cfg: ImageConfig["config"] = {};
  if (spec.user) cfg.User = spec.user;
  if (spec.exposedPorts?.length) {
    cfg.ExposedPorts = {};
    for (const p of [...new Set(spec.exposedPorts.map(normalisePort))].sort()) cfg.ExposedPorts[p] = {};
  }
  cfg.Env = spec.env;
  cfg.Entrypoint = spec.entrypoint;
  if (spec.cmd) cfg.Cmd = spec.cmd;
  cfg.WorkingDir = spec.workingDir ?? "/";
  if (spec.labels && Object.keys(spec.labels).length) cfg.Labels = sortedRecord(spec.labels);
  const p = platformObject(spec.platform);
  const config: ImageConfig = {
    created: spec.created,
    architecture: p.architecture,
    os: p.os,
    ...(p["os.version"] ? { "os.version": p["os.version"] } : {}),
    ...(p.variant ? { variant: p.variant } : {}),
    config: cfg,
    rootfs: { type: "layers", diff_ids: spec.layers.map((l) => l.diffId) },
    history: spec.layers.map((l) => ({
      created: spec.created,
      created_by: l.createdBy,
      comment: "polyarch",
    })),
  };
  const rawConfig = serialize(config);
  const configDesc: Descriptor = {
    mediaType: MediaType.OCI_CONFIG,
    digest: sha256(rawConfig),
    size: rawConfig.byteLength,
  };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: configDesc,
    layers: spec.layers.map((l) => descriptor({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  if (spec.annotations && Object.keys(spec.annotations).length)
    manifest.annotations = sortedRecord(spec.annotations);
  const rawManifest = serialize(manifest);
  const files = new Map<Digest, FileLayer>(spec.layers.map((l) => [l.digest, l]));
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
    open: (d) => {
      if (d.digest === configDesc.digest) {
        verifyBytes(rawConfig, d, "image config");
        return (async function* () {
          yield rawConfig;
        })();
      }
      const f = files.get(d.digest);
      if (!f)
        throw new PolyarchError({
          code: "E_INTERNAL",
          message: `blob ${d.digest} is not part of this image`,
          hint: "This is a bug in polyarch.",
        });
      return verifyingStream(createReadStream(f.file, { highWaterMark: 1 << 20 }), d, `layer ${d.digest}`);
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
