import type { Descriptor, Digest } from "../digest/index.js";
import { Semaphore } from "../util/limit.js";
import type { Artifact } from "./index.js";

/** A place blobs can be stored: an OCI layout, a tarball being written, later a registry. */
export interface BlobSink {
  /** Stores a blob unless present; returns true when it wrote it. */
  putBlob(
    desc: Pick<Descriptor, "digest" | "size">,
    /** Opens the bytes; called again if the sink retries. */
    open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<boolean>;
  /**
   * Stores a blob that is also a local file (Image.blobFile), e.g. by hard link; returns true
   * when it wrote it. Without it the file is streamed through putBlob.
   */
  putBlobFile?(desc: Pick<Descriptor, "digest" | "size">, file: string): Promise<boolean>;
  /** Stores a manifest (a registry PUTs it by digest); without it manifests are blobs. */
  putManifest?(desc: Descriptor, raw: Uint8Array): Promise<boolean>;
}

/** Blobs written at once: enough to overlap hashing and fsync latency, bounded like ggcr's 4 jobs. */
export const WRITE_CONCURRENCY = 4;

/**
 * Writes an artifact children-first: for an image its config and layers, then its manifest;
 * for an index every child, then the index. Independent blobs are written concurrently (at
 * most WRITE_CONCURRENCY at once) and each digest once, however many images share it.
 * Returns the digests newly written; they are also added to `written` as they are stored, so
 * a publish that fails can take back exactly those.
 */
export async function writeArtifact(
  sink: BlobSink,
  artifact: Artifact,
  concurrency = WRITE_CONCURRENCY,
  written = new Set<Digest>(),
): Promise<Set<Digest>> {
  const inflight = new Map<Digest, Promise<void>>();
  const writes = new Semaphore(concurrency);
  // Reading child manifests is bounded too: an index of 20,000 entries must not open 20,000 files.
  const reads = new Semaphore(16);
  // After the first failure nothing new starts, and the error is thrown only once every write
  // already under way has finished: a caller rolling back never races a writer (issue 8).
  let failure: { error: unknown } | undefined;
  const guarded = (fn: () => Promise<void>) =>
    writes.run(async () => {
      if (failure) throw failure.error;
      try {
        await fn();
      } catch (e) {
        failure ??= { error: e };
        throw e;
      }
    });
  const once = (digest: Digest, fn: () => Promise<void>): Promise<void> => {
    let p = inflight.get(digest);
    if (!p) {
      p = guarded(fn);
      inflight.set(digest, p);
    }
    return p;
  };
  const put = (
    desc: Pick<Descriptor, "digest" | "size">,
    open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    file?: string,
  ): Promise<void> =>
    once(desc.digest, async () => {
      const stored =
        file !== undefined && sink.putBlobFile
          ? await sink.putBlobFile(desc, file)
          : await sink.putBlob(desc, open);
      if (stored) written.add(desc.digest);
    });
  // One write per artifact digest, however often it is reached: a second parent waits for it.
  const artifacts = new Map<Digest, Promise<void>>();
  const write = async (a: Artifact): Promise<void> => {
    const desc = await a.descriptor();
    let p = artifacts.get(desc.digest);
    if (!p) {
      p = writeOne(a, desc);
      artifacts.set(desc.digest, p);
    }
    return p;
  };
  const writeOne = async (a: Artifact, desc: Descriptor): Promise<void> => {
    if (a.kind === "image") {
      const m = await a.manifest();
      await Promise.all([m.config, ...m.layers].map((b) => put(b, () => a.blob(b), a.blobFile?.(b))));
    } else {
      const m = await a.manifest();
      await Promise.all(
        m.manifests.map(async (d) => {
          if (failure) throw failure.error;
          return write(await reads.run(() => a.child(d)));
        }),
      );
    }
    // Children are stored: now the parent may name them.
    const raw = await a.rawManifest();
    if (sink.putManifest) {
      await once(desc.digest, async () => {
        if (await sink.putManifest!(desc, raw)) written.add(desc.digest);
      });
    } else {
      await put(desc, () => [raw]);
    }
  };
  try {
    await write(artifact);
  } catch (e) {
    failure ??= { error: e };
    for (;;) {
      const pending = [...inflight.values()];
      await Promise.allSettled(pending);
      if (inflight.size === pending.length) break;
    }
    throw failure.error;
  }
  return written;
}
