/**
 * Docker v2.2 media types on request (`--media-types docker`, issue 10 §4): the same image
 * under a Docker manifest list and schema 2 manifests, for old clients and registries —
 * Docker 20.10's `docker manifest inspect` refuses an OCI index outright. Layers and configs
 * are the very same bytes (Docker's gzip layer and config types name them); annotations,
 * which schema 2 has no place for, are dropped. Digests differ from the OCI form's, and are
 * as reproducible.
 */
import { PolyarchError } from "../errors.js";
import type { Descriptor } from "../digest/index.js";
import { descriptor, type ImageIndex, type ImageManifest, MediaType, serialize } from "../manifest/index.js";
import { type Artifact, type Image, type Index, imageFromCore, indexFromCore } from "./index.js";

const LAYER: Record<string, string> = {
  [MediaType.OCI_LAYER_GZIP]: MediaType.DOCKER_LAYER_GZIP,
  [MediaType.DOCKER_LAYER_GZIP]: MediaType.DOCKER_LAYER_GZIP,
  [MediaType.OCI_LAYER_NONDIST_GZIP]: MediaType.DOCKER_FOREIGN_LAYER,
  [MediaType.DOCKER_FOREIGN_LAYER]: MediaType.DOCKER_FOREIGN_LAYER,
};

async function dockerImage(image: Image, platform: Descriptor["platform"]): Promise<Image> {
  const m = await image.manifest();
  const layers = m.layers.map((l) => {
    const mediaType = LAYER[l.mediaType];
    if (!mediaType)
      throw new PolyarchError({
        code: "E_MEDIA_TYPE",
        message: `a layer of type ${l.mediaType} has no Docker media type`,
        hint: "Docker schema 2 carries gzip layers only; build with --media-types oci.",
      });
    return descriptor({ mediaType, digest: l.digest, size: l.size, ...(l.urls ? { urls: l.urls } : {}) });
  });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.DOCKER_MANIFEST,
    config: { mediaType: MediaType.DOCKER_CONFIG, digest: m.config.digest, size: m.config.size },
    layers,
  };
  // The blobs are the OCI image's: asked for under the Docker type, read under the original.
  const original = new Map<string, Descriptor>([m.config, ...m.layers].map((d) => [d.digest, d]));
  const orig = (d: Descriptor) => original.get(d.digest) ?? d;
  return imageFromCore({
    rawManifest: serialize(manifest),
    mediaType: MediaType.DOCKER_MANIFEST,
    ...(platform ? { platform } : {}),
    readBytes: async (d) => {
      if (d.digest === m.config.digest) return image.rawConfig();
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `blob ${d.digest} is not a config`,
        hint: "This is a bug in polyarch.",
      });
    },
    open: (d) => image.blob(orig(d)),
    ...(image.blobFile ? { file: (d: Descriptor) => image.blobFile!(orig(d)) } : {}),
  });
}

/** The artifact again under Docker v2.2 media types (an index becomes a manifest list). */
export async function withDockerMediaTypes(artifact: Artifact): Promise<Artifact> {
  if (artifact.kind === "image") return dockerImage(artifact, (await artifact.descriptor()).platform);
  const index: Index = artifact;
  const children: Image[] = [];
  for (const d of (await index.manifest()).manifests) {
    const child = await index.child(d);
    if (child.kind !== "image")
      throw new PolyarchError({
        code: "E_MEDIA_TYPE",
        message: "a nested index has no Docker media type",
        hint: "Docker manifest lists hold images only; build with --media-types oci.",
      });
    children.push(await dockerImage(child, d.platform));
  }
  const descs = await Promise.all(children.map((c) => c.descriptor()));
  const list: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.DOCKER_MANIFEST_LIST,
    manifests: descs.map((d) => descriptor(d)),
  };
  const byDigest = new Map(descs.map((d, i) => [d.digest, children[i]!]));
  return indexFromCore({
    rawManifest: serialize(list),
    mediaType: MediaType.DOCKER_MANIFEST_LIST,
    child: async (d) => {
      const c = byDigest.get(d.digest);
      if (!c)
        throw new PolyarchError({
          code: "E_NOT_FOUND",
          message: `${d.digest} is not in this list`,
          hint: "This is a bug in polyarch.",
        });
      return c;
    },
  });
}
