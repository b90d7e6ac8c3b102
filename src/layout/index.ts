/**
 * The OCI image layout store: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
 * https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 *
 * Writes are crash-safe (reliability.md LAY-01…03, LAY-05):
 * 1. a blob goes to a temp file in the layout, is fsynced, its size and digest are checked,
 *    then it is renamed to its name and made read-only, and the directory is fsynced;
 * 2. `index.json` is replaced by temp file + rename, under a lock, after every blob it names
 *    is stored, so a failed or killed write leaves the previous index in place;
 * 3. digests are validated before any path is built, and symlinked blobs are refused.
 */
import { createReadStream } from "node:fs";
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import {
  type Descriptor,
  type Digest,
  digestAlgorithm,
  digestHex,
  parseDigest,
  verifyBytes,
  verifyingStream,
} from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import {
  Annotation,
  descriptor,
  type ImageIndex,
  MediaType,
  parseManifest,
  serialize,
} from "../manifest/index.js";
import { withLock } from "./_lock.js";

export const LAYOUT_VERSION = "1.0.0";

function layoutError(message: string, hint: string, cause?: unknown): PolyarchError {
  return new PolyarchError({ code: "E_LAYOUT", message, hint, cause });
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeFileAtomic(file: string, data: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fh = await open(tmp, "wx", 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(file));
}

export interface TagEntry {
  tag: string;
  descriptor: Descriptor;
}

export class OciLayout {
  readonly dir: string;
  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens an existing layout, checking `oci-layout` and `index.json`. */
  static async open(dir: string): Promise<OciLayout> {
    const l = new OciLayout(path.resolve(dir));
    let raw: string;
    try {
      raw = await readFile(path.join(l.dir, "oci-layout"), "utf8");
    } catch (e) {
      throw layoutError(
        `${dir} is not an OCI image layout (no oci-layout file)`,
        "Point at a directory polyarch, skopeo or another OCI tool wrote, or build into it first.",
        e,
      );
    }
    let version: unknown;
    try {
      version = (JSON.parse(raw) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      version = undefined;
    }
    if (typeof version !== "string") {
      throw layoutError(`${dir}/oci-layout has no imageLayoutVersion`, "The layout is damaged; rebuild it.");
    }
    await l.readIndex();
    return l;
  }

  /** Opens a layout, creating an empty one when the directory is missing or empty. */
  static async openOrCreate(dir: string): Promise<OciLayout> {
    const abs = path.resolve(dir);
    const st = await stat(abs).catch(() => undefined);
    if (st && !st.isDirectory()) {
      throw layoutError(`${dir} exists and is not a directory`, "Choose another output directory.");
    }
    const entries = st ? await readdir(abs) : [];
    if (entries.includes("oci-layout")) return OciLayout.open(abs);
    if (entries.length > 0) {
      throw layoutError(
        `${dir} is not empty and is not an OCI image layout`,
        "Choose an empty or new directory for the layout, so polyarch never mixes with other files.",
      );
    }
    await mkdir(path.join(abs, "blobs", "sha256"), { recursive: true });
    const l = new OciLayout(abs);
    await writeFileAtomic(
      path.join(abs, "index.json"),
      serialize({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] }),
    );
    await writeFileAtomic(path.join(abs, "oci-layout"), serialize({ imageLayoutVersion: LAYOUT_VERSION }));
    return l;
  }

  blobPath(digest: Digest): string {
    const d = parseDigest(digest); // validates before a path is built: no "../" can reach here
    return path.join(this.dir, "blobs", digestAlgorithm(d), digestHex(d));
  }

  /** True when the blob is stored with the right size (re-hash with `verifyBlob`). */
  async hasBlob(desc: Pick<Descriptor, "digest" | "size">): Promise<boolean> {
    const st = await lstat(this.blobPath(desc.digest)).catch(() => undefined);
    if (!st) return false;
    if (st.isSymbolicLink()) {
      throw layoutError(
        `blob ${desc.digest} in ${this.dir} is a symlink`,
        "Remove the symlink; blobs must be regular files.",
      );
    }
    return st.isFile() && st.size === desc.size;
  }

  /** Stores a blob from a stream, verifying it; an existing blob of the right size is kept. Returns true when written. */
  async putBlob(
    desc: Pick<Descriptor, "digest" | "size">,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<boolean> {
    if (await this.hasBlob(desc)) return false;
    const dest = this.blobPath(desc.digest);
    await mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const fh = await open(tmp, "wx", 0o644);
    try {
      for await (const chunk of verifyingStream(source, desc, `blob ${desc.digest}`)) await fh.write(chunk);
      await fh.sync();
      await fh.close();
      await chmod(tmp, 0o444);
      await rename(tmp, dest);
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw e;
    }
    await fsyncDir(path.dirname(dest));
    return true;
  }

  async putBlobBytes(desc: Pick<Descriptor, "digest" | "size">, data: Uint8Array): Promise<boolean> {
    verifyBytes(data, desc, `blob ${desc.digest}`);
    return this.putBlob(desc, [data]);
  }

  /** Reads a whole small blob (manifest, config), verified. */
  async readBlobBytes(desc: Pick<Descriptor, "digest" | "size">, limit: number): Promise<Uint8Array> {
    if (desc.size > limit) {
      throw new PolyarchError({
        code: "E_SIZE",
        message: `blob ${desc.digest} is ${desc.size} bytes, more than the ${limit} allowed here`,
        hint: "The layout refers to an oversize document; check where it came from.",
      });
    }
    const file = this.blobPath(desc.digest);
    const st = await lstat(file).catch(() => undefined);
    if (!st) {
      throw new PolyarchError({
        code: "E_NOT_FOUND",
        message: `blob ${desc.digest} is missing from ${this.dir}`,
        hint: "The layout is incomplete; rebuild or re-copy the image into it.",
      });
    }
    if (st.isSymbolicLink())
      throw layoutError(
        `blob ${desc.digest} in ${this.dir} is a symlink`,
        "Remove the symlink; blobs must be regular files.",
      );
    const data = await readFile(file);
    verifyBytes(data, desc, `blob ${desc.digest} in ${this.dir}`);
    return data;
  }

  /** Streams a blob, verified against its descriptor as it is read. */
  readBlob(desc: Pick<Descriptor, "digest" | "size">): AsyncIterable<Uint8Array> {
    return verifyingStream(
      createReadStream(this.blobPath(desc.digest), { highWaterMark: 1 << 20 }),
      desc,
      `blob ${desc.digest} in ${this.dir}`,
    );
  }

  async readIndex(): Promise<{ raw: Uint8Array; index: ImageIndex }> {
    let raw: Uint8Array;
    try {
      raw = await readFile(path.join(this.dir, "index.json"));
    } catch (e) {
      throw layoutError(`${this.dir} has no index.json`, "The layout is damaged; rebuild it.", e);
    }
    let parsed: ReturnType<typeof parseManifest>;
    try {
      parsed = parseManifest(raw);
    } catch (e) {
      throw layoutError(
        `${this.dir}/index.json is not a valid image index: ${(e as Error).message}`,
        "The layout is damaged; rebuild it.",
        e,
      );
    }
    if (parsed.kind !== "index")
      throw layoutError(`${this.dir}/index.json is not an image index`, "The layout is damaged; rebuild it.");
    return { raw, index: parsed.index };
  }

  /** The tags recorded in index.json (org.opencontainers.image.ref.name). */
  async tags(): Promise<TagEntry[]> {
    const { index } = await this.readIndex();
    const out: TagEntry[] = [];
    for (const d of index.manifests) {
      const tag = d.annotations?.[Annotation.REF_NAME];
      if (tag) out.push({ tag, descriptor: d });
    }
    return out;
  }

  /** Resolves a tag (or the only entry when no tag is given). */
  async resolve(tag: string | undefined): Promise<Descriptor> {
    const { index } = await this.readIndex();
    if (tag === undefined) {
      if (index.manifests.length === 1) return index.manifests[0] as Descriptor;
      throw new PolyarchError({
        code: "E_NOT_FOUND",
        message: `${this.dir} holds ${index.manifests.length} images; say which one`,
        hint: `Add a tag: oci:${this.dir}:<tag>. Tags here: ${(await this.tags()).map((t) => t.tag).join(", ") || "(none)"}.`,
      });
    }
    const hit = index.manifests.find((d) => d.annotations?.[Annotation.REF_NAME] === tag);
    if (!hit) {
      const have = (await this.tags()).map((t) => t.tag);
      throw new PolyarchError({
        code: "E_NOT_FOUND",
        message: `tag "${tag}" is not in ${this.dir}`,
        hint: have.length
          ? `Tags here: ${have.join(", ")}.`
          : "The layout has no tags yet; build into it first.",
      });
    }
    return hit;
  }

  /**
   * Points tags at a descriptor, replacing entries with the same tag, under the layout lock.
   * Call only after every blob the descriptor reaches is stored.
   */
  async setTags(
    target: Descriptor,
    tags: readonly string[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<void> {
    await withLock(
      path.join(this.dir, "index.json.lock"),
      async () => {
        const { index } = await this.readIndex();
        const keep = index.manifests.filter((d) => {
          const name = d.annotations?.[Annotation.REF_NAME];
          return name === undefined ? d.digest !== target.digest : !tags.includes(name);
        });
        const added = (tags.length ? tags : [undefined]).map((tag) => {
          const annotations = { ...(target.annotations ?? {}) };
          if (tag) annotations[Annotation.REF_NAME] = tag;
          else delete annotations[Annotation.REF_NAME];
          return descriptor({ ...target, annotations });
        });
        const next: ImageIndex = {
          schemaVersion: 2,
          mediaType: MediaType.OCI_INDEX,
          manifests: [...keep, ...added],
        };
        if (index.annotations) next.annotations = index.annotations;
        await writeFileAtomic(path.join(this.dir, "index.json"), serialize(next));
      },
      opts,
    );
  }

  /** Removes blobs that were added by a write that then failed (never blobs that existed before). */
  async removeBlobs(digests: Iterable<Digest>): Promise<void> {
    for (const d of digests) await rm(this.blobPath(d), { force: true });
  }
}
