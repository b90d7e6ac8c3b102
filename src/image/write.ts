import type { Descriptor, Digest } from "../digest/index.js";
import type { Artifact } from "./index.js";

/** A place blobs can be stored: an OCI layout, a tarball being written, later a registry. */
export interface BlobSink {
  /** Stores a blob unless present; returns true when it wrote it. */
  putBlob(
    desc: Pick<Descriptor, "digest" | "size">,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<boolean>;
}

/**
 * Writes an artifact children-first: for an image its config and layers, then its manifest;
 * for an index each child, then the index. Blobs are written once even when shared.
 * Returns the digests newly written, so a failed publish can take them back.
 */
export async function writeArtifact(
  sink: BlobSink,
  artifact: Artifact,
  written: Set<Digest> = new Set(),
  seen: Set<Digest> = new Set(),
): Promise<Set<Digest>> {
  const desc = await artifact.descriptor();
  if (seen.has(desc.digest)) return written;
  if (artifact.kind === "image") {
    const m = await artifact.manifest();
    for (const blob of [m.config, ...m.layers]) {
      if (seen.has(blob.digest)) continue;
      seen.add(blob.digest);
      if (await sink.putBlob(blob, artifact.blob(blob))) written.add(blob.digest);
    }
  } else {
    const m = await artifact.manifest();
    for (const d of m.manifests) await writeArtifact(sink, await artifact.child(d), written, seen);
  }
  seen.add(desc.digest);
  if (await sink.putBlob(desc, [await artifact.rawManifest()])) written.add(desc.digest);
  return written;
}
