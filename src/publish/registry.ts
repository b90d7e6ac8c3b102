/**
 * Publishing to a registry, children first (reliability.md REG-08/09): every blob (HEAD first,
 * mounted when the source repository is on the same registry), then each platform manifest by
 * digest, then the index by digest, and only then the tags. A failure before the tags leaves
 * every existing tag where it was; a rerun skips what is already there.
 */
import type { Descriptor, Digest } from "../digest/index.js";
import { addContext, PolyarchError } from "../errors.js";
import { type Artifact, type Index, platformImages } from "../image/index.js";
import { formatPlatform, type Platform } from "../platform/index.js";
import { type BlobSink, writeArtifact } from "../image/write.js";
import { formatReference, type Reference } from "../ref/index.js";
import type { RegistryClient, Repo } from "../registry/index.js";
import type { Publisher, PublishResult, PushStats } from "./index.js";

export type { PushStats };

/**
 * Blobs whose upload to one repository started while the build was still running, by digest:
 * what the upload found or did, or undefined if it failed (publish then uploads it itself).
 */
export type StagedBlobs = Map<Digest, Promise<"exists" | "mounted" | "uploaded" | undefined>>;

export interface RegistryPublisherOptions {
  /** Uploads already started for this repository (see StagedBlobs). */
  staged?: StagedBlobs;
  /** Repositories on the destination registry that may hold the blobs (cross-repository mount). */
  mountFrom?: string[];
  chunkSize?: number;
  onBlob?: (e: { digest: Digest; size: number; result: "exists" | "mounted" | "uploaded" }) => void;
}

export class RegistryPublisher implements Publisher {
  readonly client: RegistryClient;
  readonly repo: Repo;
  readonly #opts: RegistryPublisherOptions;
  /** Counts for the publish under way; each result carries its own copy. */
  readonly #stats: PushStats = {
    blobsUploaded: 0,
    blobsUploadedEarly: 0,
    bytesUploaded: 0,
    blobsPresent: 0,
    blobsMounted: 0,
    manifestsPut: 0,
    manifestsPresent: 0,
  };

  constructor(client: RegistryClient, repo: Repo, opts: RegistryPublisherOptions = {}) {
    this.client = client;
    this.repo = repo;
    this.#opts = opts;
  }

  sink(signal?: AbortSignal): BlobSink {
    const { client, repo } = this;
    return {
      putBlob: async (desc, open) => {
        const early = await this.#opts.staged?.get(desc.digest);
        const result =
          early ??
          (await client.uploadBlob(repo, desc, open, {
            ...(this.#opts.mountFrom ? { mountFrom: this.#opts.mountFrom } : {}),
            ...(this.#opts.chunkSize ? { chunkSize: this.#opts.chunkSize } : {}),
            ...(signal ? { signal } : {}),
          }));
        if (result === "uploaded") {
          this.#stats.blobsUploaded++;
          if (early) this.#stats.blobsUploadedEarly++;
          this.#stats.bytesUploaded += desc.size;
        } else if (result === "mounted") this.#stats.blobsMounted++;
        else this.#stats.blobsPresent++;
        this.#opts.onBlob?.({ digest: desc.digest, size: desc.size, result });
        return result !== "exists";
      },
      putManifest: async (desc: Descriptor, raw: Uint8Array) => {
        const have = await client.headManifest({ ...repo, digest: desc.digest }, signal, { forPush: true });
        if (have?.digest === desc.digest) {
          this.#stats.manifestsPresent++;
          return false;
        }
        await client.putManifest(repo, desc.digest, raw, desc.mediaType, signal);
        this.#stats.manifestsPut++;
        return true;
      },
    };
  }

  /**
   * Tags platform images of an already published index (`1.2.3-arm64`, seed 003's pattern).
   * Call after `publish`: the children are stored, so each tag names a complete image.
   */
  async tagPlatforms(
    index: Index,
    tags: readonly { platform: Platform; tag: string }[],
    signal?: AbortSignal,
  ): Promise<string[]> {
    if (tags.length === 0) return [];
    const children = await platformImages(index);
    const refs: string[] = [];
    for (const { platform, tag } of tags) {
      const child = children.find((c) => formatPlatform(c.descriptor.platform!) === formatPlatform(platform));
      if (!child)
        throw new PolyarchError({
          code: "E_INTERNAL",
          message: `no ${formatPlatform(platform)} image to tag ${tag}`,
          hint: "This is a bug in polyarch.",
        });
      await this.client.putManifest(
        this.repo,
        tag,
        await child.image.rawManifest(),
        child.descriptor.mediaType,
        signal,
      );
      refs.push(formatReference({ ...this.repo, tag, digest: child.descriptor.digest }));
    }
    return refs;
  }

  async publish(
    artifact: Artifact,
    tags: readonly string[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<PublishResult> {
    const target = `${this.repo.registry}/${this.repo.repository}`;
    try {
      // As many blobs in flight as containers/image copies layers (6): registries are latency-bound.
      await writeArtifact(this.sink(opts.signal), artifact, 6);
      const desc = await artifact.descriptor();
      const raw = await artifact.rawManifest();
      // Tags move last, each to the same bytes, so every tag names the same digest. A registry
      // has no multi-tag transaction: if one fails, say exactly which moved (issue 8).
      const moved: string[] = [];
      for (const tag of tags) {
        try {
          await this.client.putManifest(this.repo, tag, raw, desc.mediaType, opts.signal);
        } catch (e) {
          const rest = tags.slice(moved.length);
          throw new PolyarchError({
            code: e instanceof PolyarchError ? e.code : "E_REGISTRY",
            message: `${desc.digest} is stored, but tag ${tag} could not be set: ${(e as Error).message}; tags moved: ${moved.join(", ") || "none"}; not moved: ${rest.join(", ")}`,
            hint: "Run the same command again: everything is stored, so it only sets the tags that are missing.",
            cause: e,
            ...(e instanceof PolyarchError && e.data ? { data: e.data } : {}),
          });
        }
        moved.push(tag);
      }
      const refs: Reference[] = tags.length
        ? tags.map((tag) => ({ ...this.repo, tag, digest: desc.digest }))
        : [{ ...this.repo, digest: desc.digest }];
      return { digest: desc.digest, references: refs.map(formatReference), stats: { ...this.#stats } };
    } catch (e) {
      throw addContext(e, `pushing to ${target}`);
    }
  }
}
