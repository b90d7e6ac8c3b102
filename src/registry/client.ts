/**
 * Distribution API operations (https://github.com/opencontainers/distribution-spec/blob/main/spec.md).
 * Every manifest and blob read is verified against its digest with a bounded read; uploads
 * HEAD first, try a cross-repository mount, then stream; every operation is idempotent, so a
 * rerun finishes what a failed run started.
 */
import {
  type Descriptor,
  type Digest,
  Digester,
  parseDigest,
  sha256,
  verifyingStream,
} from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import {
  type ImageIndex,
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  MediaType,
  parseManifest,
} from "../manifest/index.js";
import type { Reference } from "../ref/index.js";
import { fixedBlocks } from "../util/blocks.js";
import { isRetryableNetworkError, MAX_ERROR_BODY, parseErrorBody } from "./errors.js";
import { asExhausted, header, Transport, type TransportResponse } from "./transport.js";

export interface Repo {
  registry: string;
  repository: string;
}

export interface FetchedManifest {
  raw: Uint8Array;
  mediaType: string;
  digest: Digest;
}

export interface UploadOptions {
  /** Repositories on the same registry that may already hold the blob (cross-repository mount). */
  mountFrom?: string[];
  /** Upload in PATCH chunks of this many bytes (Content-Range) instead of one streamed PATCH. */
  chunkSize?: number;
  signal?: AbortSignal;
  /** Bytes sent so far for this blob (restarts at 0 on a retry). */
  onProgress?: (sent: number) => void;
}

export type UploadResult = "exists" | "mounted" | "uploaded";

const pull = (r: Repo) => [`repository:${r.repository}:pull`];
const push = (r: Repo, mountFrom: string[] = []) => [
  `repository:${r.repository}:pull,push`,
  ...mountFrom.map((m) => `repository:${m}:pull`),
];

function contentType(res: TransportResponse): string | undefined {
  return header(res, "content-type")?.split(";")[0]?.trim();
}

async function readBounded(res: TransportResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(header(res, "content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > limit) {
    await res.body.dump();
    throw new PolyarchError({
      code: "E_SIZE",
      message: `${what} exceeds ${limit} bytes (it declares ${declared})`,
      hint: "polyarch refuses oversize manifests to bound memory; check the source.",
    });
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.body.destroy();
      throw new PolyarchError({
        code: "E_SIZE",
        message: `${what} exceeds ${limit} bytes`,
        hint: "polyarch refuses oversize manifests to bound memory; check the source.",
      });
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

export class RegistryClient {
  readonly transport: Transport;
  constructor(transport: Transport) {
    this.transport = transport;
  }

  /** GETs a manifest by tag or digest; a by-digest read must hash to that digest. */
  async getManifest(ref: Reference, signal?: AbortSignal): Promise<FetchedManifest> {
    const id = ref.digest ?? ref.tag ?? "latest";
    const what = `manifest ${ref.registry}/${ref.repository}${ref.digest ? `@${ref.digest}` : `:${id}`}`;
    return this.transport.retry(
      `reading ${what}`,
      async () => {
        const res = await this.transport.request({
          method: "GET",
          registry: ref.registry,
          path: `/v2/${ref.repository}/manifests/${id}`,
          headers: { accept: MANIFEST_ACCEPT.join(", ") },
          scopes: pull(ref),
          expect: [200, 404],
          ...(signal ? { signal } : {}),
        });
        if (res.status === 404) {
          const { codes } = parseErrorBody(
            await readBounded(res, MAX_ERROR_BODY, "error body").then(
              (b) => b.toString("utf8"),
              () => "",
            ),
          );
          throw await this.#notFound(ref, what, codes, signal);
        }
        const raw = await readBounded(res, MAX_MANIFEST_BYTES, what);
        const digest = sha256(raw);
        if (ref.digest && digest !== ref.digest) {
          throw new PolyarchError({
            code: "E_DIGEST",
            message: `digest mismatch for ${what}: got ${digest} after ${raw.length} bytes`,
            hint: "The registry served different bytes than asked for; do not trust it for this image.",
          });
        }
        // By tag, the registry's Docker-Content-Digest is what the bytes must hash to (issue 8):
        // a body changed in transit is refused, not published under another digest.
        const claimed = header(res, "docker-content-digest");
        if (claimed !== undefined && claimed !== digest) {
          throw new PolyarchError({
            code: "E_DIGEST",
            message: `digest mismatch for ${what}: the registry says ${claimed}, the ${raw.length} bytes received hash to ${digest}`,
            hint: "The manifest was changed between the registry and here; nothing was written. Try again, or check what sits in between.",
          });
        }
        const parsed = parseManifest(raw, contentType(res));
        return { raw, mediaType: parsed.mediaType, digest };
      },
      signal,
    );
  }

  /** Says whether the repository or only the tag is missing (distribution answers MANIFEST_UNKNOWN for both). */
  async #notFound(
    ref: Reference,
    what: string,
    codes: string[],
    signal?: AbortSignal,
  ): Promise<PolyarchError> {
    let tags: string[] | undefined;
    let repoMissing = codes.includes("NAME_UNKNOWN");
    if (!repoMissing && !ref.digest) {
      try {
        tags = await this.listTags(ref, signal);
        repoMissing = tags.length === 0;
      } catch (e) {
        repoMissing = e instanceof PolyarchError && e.message.includes("repository not found");
      }
    }
    if (repoMissing) {
      return new PolyarchError({
        code: "E_NOT_FOUND",
        message: `repository ${ref.registry}/${ref.repository} not found`,
        hint: "Check the repository name, or push to it first.",
      });
    }
    const some = tags?.slice(0, 10).join(", ");
    return new PolyarchError({
      code: "E_NOT_FOUND",
      message: `${what} not found`,
      hint: some ? `Tags there: ${some}${tags!.length > 10 ? ", …" : ""}.` : "Check the tag or digest.",
    });
  }

  /** HEADs a manifest: its descriptor, or undefined when absent. */
  async headManifest(
    ref: Reference,
    signal?: AbortSignal,
    opts: { forPush?: boolean } = {},
  ): Promise<Descriptor | undefined> {
    const id = ref.digest ?? ref.tag ?? "latest";
    return this.transport.retry(
      `checking manifest ${ref.repository}:${id}`,
      async () => {
        const res = await this.transport.request({
          method: "HEAD",
          registry: ref.registry,
          path: `/v2/${ref.repository}/manifests/${id}`,
          headers: { accept: MANIFEST_ACCEPT.join(", ") },
          // A publisher checking before it writes asks with its push scope, so one token serves both.
          scopes: opts.forPush ? push(ref) : pull(ref),
          // 403 on HEAD means "unknown, proceed" on some registries (JFrog, REG-12).
          expect: [200, 404, 403, 405],
          ...(signal ? { signal } : {}),
        });
        await res.body.dump();
        if (res.status !== 200) return undefined;
        const d = header(res, "docker-content-digest");
        const size = Number(header(res, "content-length"));
        const mt = contentType(res);
        if (!d || !mt || !Number.isFinite(size)) return undefined; // incomplete HEAD: caller falls back to GET
        return { mediaType: mt, digest: parseDigest(d), size };
      },
      signal,
    );
  }

  /** PUTs a manifest under a tag or its digest; the registry's digest must be ours. */
  async putManifest(
    repo: Repo,
    tagOrDigest: string,
    raw: Uint8Array,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<Digest> {
    if (raw.byteLength > MAX_MANIFEST_BYTES) {
      throw new PolyarchError({
        code: "E_SIZE",
        message: `manifest exceeds ${MAX_MANIFEST_BYTES} bytes`,
        hint: "Registries refuse manifests above 4 MiB.",
      });
    }
    const digest = sha256(raw);
    return this.transport.retry(
      `writing manifest ${repo.repository}:${tagOrDigest}`,
      async () => {
        const res = await this.transport.request({
          method: "PUT",
          registry: repo.registry,
          path: `/v2/${repo.repository}/manifests/${tagOrDigest}`,
          headers: { "content-type": mediaType, "content-length": String(raw.byteLength) },
          body: () => raw,
          scopes: push(repo),
          expect: [200, 201, 202, 204],
          ...(signal ? { signal } : {}),
        });
        await res.body.dump();
        const got = header(res, "docker-content-digest");
        if (got && got !== digest) {
          throw new PolyarchError({
            code: "E_DIGEST",
            message: `${repo.registry} stored manifest ${repo.repository}:${tagOrDigest} as ${got}, not ${digest}`,
            hint: "The registry rewrote the manifest; polyarch will not tag a different document.",
          });
        }
        return digest;
      },
      signal,
    );
  }

  async blobExists(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    signal?: AbortSignal,
  ): Promise<boolean> {
    return this.transport.retry(
      `checking blob ${desc.digest}`,
      async () => {
        const res = await this.transport.request({
          method: "HEAD",
          registry: repo.registry,
          path: `/v2/${repo.repository}/blobs/${desc.digest}`,
          scopes: pull(repo),
          expect: [200, 404],
          ...(signal ? { signal } : {}),
        });
        await res.body.dump();
        return res.status === 200;
      },
      signal,
    );
  }

  /**
   * Streams a blob, verified against its descriptor as it arrives (at most `size` bytes are
   * read). A connection that drops mid-blob is resumed (reliability.md REG-14): the rest is
   * asked for with `Range: bytes=<offset>-`; a 206 must start at that offset, a 200 (Range
   * ignored) is read from the start with the bytes already had skipped. At most 3 resumes;
   * the digest is still checked over the whole.
   */
  async *blob(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    signal?: AbortSignal,
  ): AsyncGenerator<Uint8Array> {
    yield* verifyingStream(
      this.#resumingBody(repo, desc, signal),
      desc,
      `blob ${desc.digest} from ${repo.registry}`,
    );
  }

  async *#resumingBody(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    signal?: AbortSignal,
  ): AsyncGenerator<Uint8Array> {
    let offset = 0;
    // One retry budget for the whole blob (issue 8): failed requests and resumes that made
    // little progress draw on it; a resume after ≥ 1 MiB of progress is free (REG-14).
    const budget = { used: 0 };
    for (let resumes = 0; ; resumes++) {
      const range = offset > 0 ? { range: `bytes=${offset}-` } : undefined;
      const startedAt = offset;
      const res = await this.transport.retry(
        `reading blob ${desc.digest}`,
        () =>
          this.transport.request({
            method: "GET",
            registry: repo.registry,
            path: `/v2/${repo.repository}/blobs/${desc.digest}`,
            ...(range ? { headers: range } : {}),
            scopes: pull(repo),
            expect: range ? [200, 206] : [200],
            ...(signal ? { signal } : {}),
          }),
        signal,
        budget,
      );
      let skip = 0;
      if (res.status === 206) {
        const start = Number(/^bytes (\d+)-/.exec(header(res, "content-range") ?? "")?.[1]);
        if (start !== offset) {
          await res.body.dump();
          throw new PolyarchError({
            code: "E_REGISTRY",
            message: `the registry resumed blob ${desc.digest} at byte ${start}, not ${offset}`,
            hint: "The registry's range support is broken; try again.",
          });
        }
      } else {
        const declared = Number(header(res, "content-length") ?? "NaN");
        if (Number.isFinite(declared) && declared !== desc.size) {
          await res.body.dump();
          throw new PolyarchError({
            code: "E_DIGEST",
            message: `size mismatch for blob ${desc.digest}: want ${desc.size} bytes, the registry sends ${declared}`,
            hint: "The registry holds different content under this digest.",
          });
        }
        skip = offset; // Range ignored: drop what we already have.
      }
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          let c = chunk;
          if (skip > 0) {
            const n = Math.min(skip, c.byteLength);
            skip -= n;
            c = c.subarray(n);
            if (c.byteLength === 0) continue;
          }
          offset += c.byteLength;
          yield c;
        }
        return;
      } catch (e) {
        signal?.throwIfAborted();
        const giveUp =
          resumes >= 3 ||
          offset >= desc.size ||
          !isRetryableNetworkError(e) ||
          (offset - startedAt < 1 << 20 && budget.used >= this.transport.retryPolicy.attempts);
        if (giveUp) {
          if (e instanceof PolyarchError) throw e;
          throw asExhausted(
            new PolyarchError({
              code: "E_REGISTRY",
              message: `reading blob ${desc.digest} from ${repo.registry}/${repo.repository}: the connection broke after ${offset} of ${desc.size} bytes (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
              hint: "The registry or the network between is failing; try again later.",
              cause: e,
              data: {
                status: 0,
                codes: [],
                method: "GET",
                url: "",
                network: (e as NodeJS.ErrnoException).code ?? "",
              },
            }),
          );
        }
        if (offset - startedAt >= 1 << 20) budget.used = Math.max(0, budget.used - 1);
      } finally {
        if (!res.body.destroyed) res.body.destroy();
      }
    }
  }

  async readBlobBytes(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    limit: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    if (desc.size > limit) {
      throw new PolyarchError({
        code: "E_SIZE",
        message: `blob ${desc.digest} is ${desc.size} bytes, more than the ${limit} allowed here`,
        hint: "The image refers to an oversize config; check where it came from.",
      });
    }
    const chunks: Uint8Array[] = [];
    for await (const c of this.blob(repo, desc, signal)) chunks.push(c);
    return Buffer.concat(chunks);
  }

  /**
   * Uploads a blob unless present (reliability.md REG-08…13):
   * 1. HEAD: present → done.
   * 2. POST, with `mount`/`from` when a source repository may hold it: 201 → mounted; 202 → a session.
   *    A mount that fails is tried once more without mount.
   * 3. PUT `?digest=` with the bytes streamed in the body (monolithic), or, with `chunkSize`,
   *    PATCH chunks with Content-Range and then an empty committing PUT. The whole sequence is one retried operation; `open` is called
   *    again for each attempt, so nothing is buffered beyond one chunk.
   */
  async uploadBlob(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    opts: UploadOptions = {},
  ): Promise<UploadResult> {
    const { signal } = opts;
    const scopes = push(repo, opts.mountFrom);
    return this.transport.retry(
      `uploading blob ${desc.digest} to ${repo.registry}/${repo.repository}`,
      async () => {
        if (await this.#headBlobOnce(repo, desc, scopes, signal)) return "exists";
        let location: string | undefined;
        let chunkMin = 0;
        const session = (res: TransportResponse) => {
          const m = Number(header(res, "oci-chunk-min-length"));
          if (Number.isFinite(m) && m > 0) chunkMin = m;
          return this.#location(res);
        };
        for (const from of opts.mountFrom ?? []) {
          const q = new URLSearchParams({ mount: desc.digest, from });
          const res = await this.transport.request({
            method: "POST",
            registry: repo.registry,
            path: `/v2/${repo.repository}/blobs/uploads/?${q.toString()}`,
            headers: { "content-length": "0" },
            scopes,
            expect: [201, 202, 401, 404, 405, 500],
            ...(signal ? { signal } : {}),
          });
          await res.body.dump();
          if (res.status === 201) return "mounted";
          if (res.status === 202) {
            location = session(res);
            break;
          }
        }
        location ??= session(await this.#startUpload(repo, scopes, signal));
        const d = new Digester();
        if (opts.chunkSize) {
          let offset = 0;
          const size = Math.max(opts.chunkSize, chunkMin);
          for await (const block of fixedBlocks(open(), size)) {
            if (block.byteLength === 0) break;
            d.update(block);
            const res = await this.transport.request({
              method: "PATCH",
              registry: repo.registry,
              path: location,
              headers: {
                "content-type": "application/octet-stream",
                "content-length": String(block.byteLength),
                "content-range": `${offset}-${offset + block.byteLength - 1}`,
              },
              body: () => block,
              scopes,
              expect: [202, 204],
              ...(signal ? { signal } : {}),
            });
            await res.body.dump();
            location = this.#location(res, location);
            offset += block.byteLength;
            opts.onProgress?.(offset);
          }
        } else {
          // Monolithic: the bytes go in the committing PUT itself (one request fewer than
          // PATCH + PUT). The registry hashes them too and refuses a mismatch (DIGEST_INVALID).
          let sent = 0;
          const counted = async function* () {
            for await (const c of open()) {
              d.update(c);
              sent += c.byteLength;
              opts.onProgress?.(sent);
              yield c;
            }
          };
          const url = new URL(location);
          url.searchParams.set("digest", desc.digest);
          const res = await this.transport.request({
            method: "PUT",
            registry: repo.registry,
            path: url.toString(),
            headers: { "content-type": "application/octet-stream", "content-length": String(desc.size) },
            body: counted,
            scopes,
            expect: [200, 201, 202, 204],
            ...(signal ? { signal } : {}),
          });
          await res.body.dump();
          this.#checkRead(desc, d);
          return "uploaded";
        }
        this.#checkRead(desc, d);
        const url = new URL(location);
        url.searchParams.set("digest", desc.digest);
        const res = await this.transport.request({
          method: "PUT",
          registry: repo.registry,
          path: url.toString(),
          headers: { "content-length": "0" },
          scopes,
          expect: [200, 201, 202, 204],
          ...(signal ? { signal } : {}),
        });
        await res.body.dump();
        return "uploaded";
      },
      signal,
    );
  }

  /** POST a new upload session (202 + Location). */
  async #startUpload(repo: Repo, scopes: string[], signal?: AbortSignal): Promise<TransportResponse> {
    const res = await this.transport.request({
      method: "POST",
      registry: repo.registry,
      path: `/v2/${repo.repository}/blobs/uploads/`,
      headers: { "content-length": "0" },
      scopes,
      expect: [202],
      ...(signal ? { signal } : {}),
    });
    await res.body.dump();
    return res;
  }

  #checkRead(desc: Pick<Descriptor, "digest" | "size">, d: Digester): void {
    if (d.size !== desc.size || d.digest() !== desc.digest) {
      throw new PolyarchError({
        code: "E_DIGEST",
        message: `blob ${desc.digest} read as ${d.digest()} (${d.size} bytes) while uploading`,
        hint: "The source changed or is corrupt; nothing was committed.",
      });
    }
  }

  async #headBlobOnce(
    repo: Repo,
    desc: Pick<Descriptor, "digest" | "size">,
    scopes: string[],
    signal?: AbortSignal,
  ): Promise<boolean> {
    const res = await this.transport.request({
      method: "HEAD",
      registry: repo.registry,
      path: `/v2/${repo.repository}/blobs/${desc.digest}`,
      scopes,
      expect: [200, 404],
      ...(signal ? { signal } : {}),
    });
    await res.body.dump();
    return res.status === 200 && Number(header(res, "content-length") ?? desc.size) === desc.size;
  }

  /** The upload Location, resolved against the request URL (relative URLs keep their query, REG-10). */
  #location(res: TransportResponse, previous?: string): string {
    const loc = header(res, "location");
    if (!loc) {
      if (previous) return previous;
      throw new PolyarchError({
        code: "E_REGISTRY",
        message: `the registry started an upload without a Location (${res.url})`,
        hint: "The registry does not follow the distribution spec.",
      });
    }
    return new URL(loc, res.url).toString();
  }

  /**
   * Whether the credentials may push to a repository: opens an upload session and cancels
   * it, the registry's own permission check (nothing is written).
   */
  async canPush(repo: Repo, signal?: AbortSignal): Promise<void> {
    const scopes = push(repo);
    const res = await this.#startUpload(repo, scopes, signal);
    const del = await this.transport.request({
      method: "DELETE",
      registry: repo.registry,
      path: this.#location(res),
      scopes,
      expect: [200, 202, 204, 404, 405],
      ...(signal ? { signal } : {}),
    });
    await del.body.dump();
  }

  /** All tags of a repository, following Link pagination with n ≤ 1000 (ECR's limit). */
  async listTags(repo: Repo, signal?: AbortSignal): Promise<string[]> {
    const tags: string[] = [];
    let next: string | undefined = `/v2/${repo.repository}/tags/list?n=1000`;
    for (let page = 0; next && page < 10_000; page++) {
      const path: string = next;
      const res = await this.transport.retry(
        `listing tags of ${repo.repository}`,
        () =>
          this.transport.request({
            method: "GET",
            registry: repo.registry,
            path,
            scopes: pull(repo),
            expect: [200],
            ...(signal ? { signal } : {}),
          }),
        signal,
      );
      const body = JSON.parse((await readBounded(res, MAX_MANIFEST_BYTES, "tag list")).toString("utf8")) as {
        tags?: string[] | null;
      };
      tags.push(...(body.tags ?? []));
      const link = header(res, "link");
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      next = m ? new URL(m[1]!, res.url).toString() : undefined;
    }
    return tags;
  }

  /** The referrers of a digest (OCI 1.1 referrers API); an empty index when the registry lacks it. */
  async referrers(repo: Repo, digest: Digest, signal?: AbortSignal): Promise<ImageIndex> {
    const res = await this.transport.retry(
      `listing referrers of ${digest}`,
      () =>
        this.transport.request({
          method: "GET",
          registry: repo.registry,
          path: `/v2/${repo.repository}/referrers/${digest}`,
          headers: { accept: MediaType.OCI_INDEX },
          scopes: pull(repo),
          expect: [200, 404],
          ...(signal ? { signal } : {}),
        }),
      signal,
    );
    if (res.status === 404) {
      await res.body.dump();
      return { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] };
    }
    const parsed = parseManifest(
      await readBounded(res, MAX_MANIFEST_BYTES, "referrers"),
      MediaType.OCI_INDEX,
    );
    return parsed.kind === "index"
      ? parsed.index
      : { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] };
  }
}
