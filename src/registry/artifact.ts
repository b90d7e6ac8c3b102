import type { Descriptor } from "../digest/index.js";
import { type Artifact, imageFromCore, indexFromCore } from "../image/index.js";
import { isIndexMediaType } from "../manifest/index.js";
import type { Reference } from "../ref/index.js";
import type { RegistryClient } from "./client.js";

/**
 * A lazy view of an image or index in a registry: the manifest is fetched (and verified) now,
 * children and blobs only when asked for.
 */
export async function registryArtifact(
  client: RegistryClient,
  ref: Reference,
  desc?: Descriptor,
  signal?: AbortSignal,
): Promise<Artifact> {
  const m = await client.getManifest(desc ? { ...ref, digest: desc.digest } : ref, signal);
  const repo = { registry: ref.registry, repository: ref.repository };
  if (isIndexMediaType(m.mediaType)) {
    return indexFromCore({
      rawManifest: m.raw,
      mediaType: m.mediaType,
      child: (d) => registryArtifact(client, { ...repo, digest: d.digest }, d, signal),
    });
  }
  return imageFromCore({
    rawManifest: m.raw,
    mediaType: m.mediaType,
    ...(desc?.platform ? { platform: desc.platform } : {}),
    readBytes: (d, limit) => client.readBlobBytes(repo, d, limit, signal),
    open: (d) => client.blob(repo, d, signal),
  });
}
