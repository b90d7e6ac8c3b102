/**
 * Read-only views of images and indexes. A backend (a build, a layout, later a registry)
 * implements a small core — raw manifest bytes and a way to open blobs — and `imageFromCore` /
 * `indexFromCore` derive the rest (digest and size from the raw bytes, parsed forms, children).
 */
import { type Descriptor, type Digest, sha256 } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import {
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  isIndexMediaType,
  MAX_CONFIG_BYTES,
  parseConfig,
  parseManifest,
} from "../manifest/index.js";
import { formatPlatform, type Platform, platformMatches } from "../platform/index.js";

export interface Image {
  readonly kind: "image";
  descriptor(): Promise<Descriptor>;
  rawManifest(): Promise<Uint8Array>;
  manifest(): Promise<ImageManifest>;
  rawConfig(): Promise<Uint8Array>;
  config(): Promise<ImageConfig>;
  /**
   * Opens the bytes of the config or one of the layers. Views of stored content (layout,
   * registry) verify as they read; every sink verifies what it stores.
   */
  blob(desc: Descriptor): AsyncIterable<Uint8Array>;
  /**
   * A file on this machine that holds the blob's bytes, when the image has one (layers a
   * build wrote into the layer cache): a sink on the same file system may link it instead of
   * copying. Not verified; the sink checks it as it checks any blob.
   */
  blobFile?(desc: Descriptor): string | undefined;
}

export interface Index {
  readonly kind: "index";
  descriptor(): Promise<Descriptor>;
  rawManifest(): Promise<Uint8Array>;
  manifest(): Promise<ImageIndex>;
  child(desc: Descriptor): Promise<Artifact>;
}

export type Artifact = Image | Index;

/** What a backend must provide for an image. */
export interface ImageCore {
  rawManifest: Uint8Array;
  mediaType: string;
  platform?: Platform;
  /** Reads a small blob whole (the config), verified. */
  readBytes(desc: Descriptor, limit: number): Promise<Uint8Array>;
  /** Streams a blob, verified. */
  open(desc: Descriptor): AsyncIterable<Uint8Array>;
  /** A local file holding the blob, if there is one (see Image.blobFile). */
  file?(desc: Descriptor): string | undefined;
}

export function imageFromCore(core: ImageCore): Image {
  const parsed = parseManifest(core.rawManifest, core.mediaType);
  if (parsed.kind !== "image")
    throw new PolyarchError({
      code: "E_MEDIA_TYPE",
      message: "expected an image manifest but found an index",
      hint: "Use the index's child for one platform.",
    });
  const manifest = parsed.manifest;
  const desc: Descriptor = {
    mediaType: core.mediaType,
    digest: sha256(core.rawManifest),
    size: core.rawManifest.byteLength,
  };
  if (core.platform) desc.platform = core.platform;
  let rawConfig: Promise<Uint8Array> | undefined;
  const getRawConfig = () => {
    rawConfig ??= core.readBytes(manifest.config, MAX_CONFIG_BYTES);
    return rawConfig;
  };
  return {
    kind: "image",
    descriptor: async () => desc,
    rawManifest: async () => core.rawManifest,
    manifest: async () => manifest,
    rawConfig: getRawConfig,
    config: async () => parseConfig(await getRawConfig()),
    blob: (d) => core.open(d),
    ...(core.file ? { blobFile: (d: Descriptor) => core.file!(d) } : {}),
  };
}

/** What a backend must provide for an index. */
export interface IndexCore {
  rawManifest: Uint8Array;
  mediaType: string;
  child(desc: Descriptor): Promise<Artifact>;
}

export function indexFromCore(core: IndexCore): Index {
  const parsed = parseManifest(core.rawManifest, core.mediaType);
  if (parsed.kind !== "index")
    throw new PolyarchError({
      code: "E_MEDIA_TYPE",
      message: "expected an image index but found an image manifest",
      hint: "Inspect it as a single image.",
    });
  const desc: Descriptor = {
    mediaType: core.mediaType,
    digest: sha256(core.rawManifest),
    size: core.rawManifest.byteLength,
  };
  return {
    kind: "index",
    descriptor: async () => desc,
    rawManifest: async () => core.rawManifest,
    manifest: async () => parsed.index,
    child: (d) => core.child(d),
  };
}

/** Children of an index that are images with a platform, in index order. */
export async function platformImages(index: Index): Promise<{ descriptor: Descriptor; image: Image }[]> {
  const out: { descriptor: Descriptor; image: Image }[] = [];
  for (const d of (await index.manifest()).manifests) {
    if (isIndexMediaType(d.mediaType)) continue;
    const child = await index.child(d);
    if (child.kind === "image") out.push({ descriptor: d, image: child });
  }
  return out;
}

/** Sum of config and layer sizes: what a pull of one platform transfers. */
export async function compressedSize(image: Image): Promise<number> {
  const m = await image.manifest();
  return m.config.size + m.layers.reduce((n, l) => n + l.size, 0) + (await image.descriptor()).size;
}

export type { Digest };

/** The platform an image's config declares. */
export async function imagePlatform(image: Image): Promise<Platform> {
  const cfg = await image.config();
  return { os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) };
}

/**
 * The index entry for a platform (images only; attestation entries with os "unknown" are
 * skipped), and the platforms the index has, for an error that names them.
 */
export function findPlatform(
  manifests: readonly Descriptor[],
  want: Platform,
): { hit: Descriptor | undefined; have: string[] } {
  const candidates = manifests.filter(
    (d) => d.platform && !isIndexMediaType(d.mediaType) && d.platform.os !== "unknown",
  );
  return {
    hit: candidates.find((d) => platformMatches(want, d.platform!)),
    have: candidates.map((d) => formatPlatform(d.platform!)),
  };
}
