import type { Descriptor, Digest } from "../digest/index.js";
import type { Artifact } from "./index.js";

/** A place blobs can be stored: an OCI layout, a tarball being written, later a registry. */
export interface BlobSink {
  /** Stores a blob unless present; returns true when it wrote it. */
  putBlob(
    desc: Pick<Descriptor, "digest" | "size">,
    /** Opens the bytes; called again if the sink retries. */
    open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<boolean>;
  /** Stores a manifest (a registry PUTs it by digest); without it manifests are blobs. */
  putManifest?(desc: Descriptor, raw: Uint8Array): Promise<boolean>;
}

/** Blobs written at once: enough to overlap hashing and fsync latency, bounded like ggcr's 4 jobs. */
export const WRITE_CONCURRENCY = 4;

/**
 * Writes an artifact children-first: for an image its config and layers, then its manifest;
 * for an index every child, then the index. Independent blobs are written concurrently (at
 * most WRITE_CONCURRENCY at once) and each digest once, however many images share it.
 * Returns the digests newly written, so a failed publish can take them back.
 */
export async function writeArtifact(
  sink: BlobSink,
  artifact: Artifact,
  concurrency = WRITE_CONCURRENCY,
): Promise<Set<Digest>> {
  const written = new Set<Digest>();
  const inflight = new Map<Digest, Promise<void>>();
  let free = concurrency;
  const waiting: (() => void)[] = [];
  const slot = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((r) => waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free++;
    }
  };
  const put = (
    desc: Pick<Descriptor, "digest" | "size">,
    open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<void> => {
    let p = inflight.get(desc.digest);
    if (!p) {
      p = slot(async () => {
        if (await sink.putBlob(desc, open)) written.add(desc.digest);
      });
      inflight.set(desc.digest, p);
    }
    return p;
  };
  const write = async (a: Artifact): Promise<void> => {
    const desc = await a.descriptor();
    const existing = inflight.get(desc.digest);
    if (existing) return existing;
    if (a.kind === "image") {
      const m = await a.manifest();
      await Promise.all([m.config, ...m.layers].map((b) => put(b, () => a.blob(b))));
    } else {
      const m = await a.manifest();
      await Promise.all(m.manifests.map(async (d) => write(await a.child(d))));
    }
    // Children are stored: now the parent may name them.
    const raw = await a.rawManifest();
    if (sink.putManifest) {
      let p = inflight.get(desc.digest);
      if (!p) {
        p = slot(async () => {
          if (await sink.putManifest!(desc, raw)) written.add(desc.digest);
        });
        inflight.set(desc.digest, p);
      }
      await p;
    } else {
      await put(desc, () => [raw]);
    }
  };
  await write(artifact);
  return written;
}
