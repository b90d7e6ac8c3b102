/**
 * Manifest lists made by hand, as `docker manifest create/annotate/push` make them (seeds 000
 * and 001), kept locally until pushed. An image that is itself an index contributes all its
 * platform images, so images built with attestations do not fail with "is a manifest list".
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Descriptor } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import {
  descriptor,
  type ImageIndex,
  isIndexMediaType,
  MediaType,
  parseConfig,
  serialize,
} from "../manifest/index.js";
import { formatPlatform, type Platform } from "../platform/index.js";
import { formatReference, parseReference, type Reference } from "../ref/index.js";
import type { RegistryClient } from "../registry/index.js";

export interface ListEntry {
  /** The reference the user gave (for annotate), and where the manifest lives. */
  image: string;
  source: string;
  descriptor: Descriptor;
}

export interface LocalList {
  ref: string;
  entries: ListEntry[];
}

export class ManifestListStore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }
  #file(ref: Reference): string {
    return path.join(this.dir, `${encodeURIComponent(formatReference(ref))}.json`);
  }
  async read(ref: Reference): Promise<LocalList | undefined> {
    const file = this.#file(ref);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw this.#damaged(ref, file, e);
    }
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch (e) {
      throw this.#damaged(ref, file, e);
    }
    const ok =
      typeof list === "object" &&
      list !== null &&
      typeof (list as LocalList).ref === "string" &&
      Array.isArray((list as LocalList).entries) &&
      (list as LocalList).entries.every(
        (x) =>
          typeof x === "object" &&
          x !== null &&
          typeof x.image === "string" &&
          typeof x.source === "string" &&
          typeof x.descriptor?.digest === "string",
      );
    if (!ok) throw this.#damaged(ref, file);
    return list as LocalList;
  }
  #damaged(ref: Reference, file: string, cause?: unknown): PolyarchError {
    return new PolyarchError({
      code: "E_INPUT",
      message: `the local manifest list for ${formatReference(ref)} (${file}) is damaged`,
      hint: `Remove it with polyarch manifest rm ${formatReference(ref)}, then create it again.`,
      ...(cause ? { cause } : {}),
    });
  }
  async write(list: LocalList): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = this.#file(parseReference(list.ref));
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await writeFile(tmp, JSON.stringify(list, null, 2));
    await rename(tmp, file);
  }
  async remove(ref: Reference): Promise<void> {
    await rm(this.#file(ref), { force: true });
  }
}

/** The platform manifests an image reference stands for, with platforms from their configs. */
export async function resolveEntries(
  client: RegistryClient,
  image: string,
  signal?: AbortSignal,
): Promise<ListEntry[]> {
  const ref = parseReference(image);
  const m = await client.getManifest(ref.tag || ref.digest ? ref : { ...ref, tag: "latest" }, signal);
  const repo = { registry: ref.registry, repository: ref.repository };
  const source = (d: string) => formatReference({ ...repo, digest: d as Descriptor["digest"] });
  if (isIndexMediaType(m.mediaType)) {
    const parsed = JSON.parse(Buffer.from(m.raw).toString("utf8")) as ImageIndex;
    return parsed.manifests
      .filter((d) => d.platform && d.platform.os !== "unknown" && !isIndexMediaType(d.mediaType))
      .map((d) => ({ image, source: source(d.digest), descriptor: descriptor(d) }));
  }
  const manifest = JSON.parse(Buffer.from(m.raw).toString("utf8")) as { config: Descriptor };
  const cfg = parseConfig(await client.readBlobBytes(repo, manifest.config, 4 * 1024 * 1024, signal));
  const platform: Platform = {
    os: cfg.os,
    architecture: cfg.architecture,
    ...(cfg.variant ? { variant: cfg.variant } : {}),
    ...(cfg["os.version"] ? { "os.version": cfg["os.version"] } : {}),
  };
  return [
    {
      image,
      source: source(m.digest),
      descriptor: descriptor({ mediaType: m.mediaType, digest: m.digest, size: m.raw.byteLength, platform }),
    },
  ];
}

/** The list document: a Docker manifest list when every entry is a Docker manifest, else an OCI index. */
export function listDocument(list: LocalList): { raw: Uint8Array; mediaType: string } {
  if (list.entries.length === 0) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `manifest list ${list.ref} is empty`,
      hint: "Add images with polyarch manifest create <list> <image>… --amend.",
    });
  }
  const seen = new Map<string, string>();
  for (const e of list.entries) {
    const key = e.descriptor.platform ? formatPlatform(e.descriptor.platform) : e.descriptor.digest;
    const prev = seen.get(key);
    if (prev && prev !== e.descriptor.digest) {
      throw new PolyarchError({
        code: "E_PLATFORM",
        message: `manifest list ${list.ref} has two different images for ${key}`,
        hint: "Remove one (create again without --amend) or annotate it with the right platform.",
      });
    }
    seen.set(key, e.descriptor.digest);
  }
  const docker = list.entries.every((e) => e.descriptor.mediaType === MediaType.DOCKER_MANIFEST);
  const mediaType = docker ? MediaType.DOCKER_MANIFEST_LIST : MediaType.OCI_INDEX;
  const unique = list.entries.filter(
    (e, i) => list.entries.findIndex((x) => x.descriptor.digest === e.descriptor.digest) === i,
  );
  const doc: ImageIndex = {
    schemaVersion: 2,
    mediaType,
    manifests: unique.map((e) => descriptor(e.descriptor)),
  };
  return { raw: serialize(doc), mediaType };
}
