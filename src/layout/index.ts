/**
 * The OCI image layout store: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
 * https://github.com/opencontainers/image-spec/blob/main/image-layout.md
 *
 * Writes are crash-safe (reliability.md LAY-01…03, LAY-05):
 * 1. a blob goes to a temp file in the layout, is fsynced, its size and digest are checked,
 *    then it is renamed to its name and made read-only, and the directory is fsynced; a blob
 *    that is already a file on the same file system (a layer in polyarch's cache, written and
 *    fsynced there) is hard-linked to the temp name instead of copied, then checked the same;
 * 2. `index.json` is replaced by temp file + rename, under a lock, after every blob it names
 *    is stored, so a failed or killed write leaves the previous index in place;
 * 3. digests are validated before any path is built, and symlinked blobs are refused: every
 *    read opens with O_NOFOLLOW, so a link is never followed, even one planted after a check;
 * 4. a new layout appears whole: its skeleton is made in a temp directory and renamed into
 *    place, so two writers creating the same new layout both end up using one;
 * 5. temp files of writers that were killed (`*.tmp-<pid>-*` whose process is gone) are
 *    removed by the next write, under the index lock.
 */
import { constants, createReadStream } from "node:fs";
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
} from "node:fs/promises";
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
import { pidAlive, withLock } from "./_lock.js";

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

/** A temp name beside `file` that says which process writes it (step 5). */
function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
}
const TEMP = /\.tmp-(\d+)-[a-z0-9]+$/;

/** Opens a blob for reading without following a symlink; missing and linked blobs are clear errors. */
async function openBlob(file: string, digest: Digest, dir: string) {
  try {
    return await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR")
      throw new PolyarchError({
        code: "E_NOT_FOUND",
        message: `blob ${digest} is missing from ${dir}`,
        hint: "The layout is incomplete; rebuild or re-copy the image into it.",
        cause: e,
      });
    if (code === "ELOOP")
      throw layoutError(
        `blob ${digest} in ${dir} is a symlink`,
        "Remove the symlink; blobs must be regular files.",
        e,
      );
    throw layoutError(
      `cannot read blob ${digest} in ${dir} (${code ?? "error"})`,
      "Check the layout's permissions.",
      e,
    );
  }
}

async function writeFileAtomic(file: string, data: Uint8Array): Promise<void> {
  const tmp = tempName(file);
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
  /** True when this call of openOrCreate made the layout (so a failed first write may remove it). */
  created = false;
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
    // Step 4: the skeleton is built beside the target and renamed in. rename(2) replaces an
    // empty directory; if another writer's layout got there first, it fails and we use theirs.
    await mkdir(path.dirname(abs), { recursive: true });
    // Skeletons of creators that were killed before their rename (step 5, for this step).
    for (const name of await readdir(path.dirname(abs))) {
      if (!name.startsWith(`${path.basename(abs)}.tmp-`)) continue;
      const pid = Number(/\.tmp-(\d+)-[^.]*$/.exec(name)?.[1]);
      if (pid && pid !== process.pid && !pidAlive(pid))
        await rm(path.join(path.dirname(abs), name), { recursive: true, force: true });
    }
    const tmp = await mkdtemp(`${abs}.tmp-${process.pid}-`);
    try {
      await chmod(tmp, 0o755); // mkdtemp makes 0700; a layout is as readable as any output

      await mkdir(path.join(tmp, "blobs", "sha256"), { recursive: true });
      await writeFileAtomic(
        path.join(tmp, "index.json"),
        serialize({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] }),
      );
      await writeFileAtomic(path.join(tmp, "oci-layout"), serialize({ imageLayoutVersion: LAYOUT_VERSION }));
      await rename(tmp, abs);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") return OciLayout.openOrCreate(abs);
      throw e;
    }
    await fsyncDir(path.dirname(abs));
    const l = new OciLayout(abs);
    l.created = true;
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
    const tmp = tempName(dest);
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

  /**
   * Stores a blob that is the local file `file`: hard-linked when both are on one file system
   * (no copy, and no second fsync: a link shares the data already on disk), copied as
   * putBlob does otherwise. Either way its size and digest are checked before it gets its name,
   * and it becomes read-only (a link shares its mode with `file`). Returns true when written.
   */
  async putBlobFile(desc: Pick<Descriptor, "digest" | "size">, file: string): Promise<boolean> {
    if (await this.hasBlob(desc)) return false;
    const dest = this.blobPath(desc.digest);
    await mkdir(path.dirname(dest), { recursive: true });
    const tmp = tempName(dest);
    const read = (f: string) => createReadStream(f, { highWaterMark: 1 << 20 });
    try {
      await link(file, tmp);
    } catch {
      // Another file system (EXDEV), or links not allowed: copy.
      return this.putBlob(desc, read(file));
    }
    try {
      // What gets the name is checked: the linked inode, whatever happens to `file` meanwhile.
      for await (const _chunk of verifyingStream(read(tmp), desc, `blob ${desc.digest}`)) {
        // hashed by verifyingStream
      }
      await chmod(tmp, 0o444);
      await rename(tmp, dest);
    } catch (e) {
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
    const fh = await openBlob(this.blobPath(desc.digest), desc.digest, this.dir);
    let data: Buffer;
    try {
      const st = await fh.stat();
      if (!st.isFile())
        throw layoutError(
          `blob ${desc.digest} in ${this.dir} is not a regular file`,
          "The layout is damaged.",
        );
      // Read at most one byte past the size: enough to see a mismatch, never an unbounded read.
      const buf = Buffer.alloc(Math.min(st.size, desc.size + 1));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      data = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
    verifyBytes(data, desc, `blob ${desc.digest} in ${this.dir}`);
    return data;
  }

  /** Streams a blob, verified against its descriptor as it is read. */
  readBlob(desc: Pick<Descriptor, "digest" | "size">): AsyncIterable<Uint8Array> {
    const file = this.blobPath(desc.digest);
    const dir = this.dir;
    // Opened only when read: a stream made and dropped can never emit an unhandled 'error'.
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const fh = await openBlob(file, desc.digest, dir);
      const stream = fh.createReadStream({ highWaterMark: 1 << 20 }); // closes fh when done or destroyed
      try {
        yield* stream as AsyncIterable<Uint8Array>;
      } finally {
        stream.destroy();
      }
    }
    return verifyingStream(chunks(), desc, `blob ${desc.digest} in ${this.dir}`);
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
        await this.removeStaleTemps();
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

  /**
   * Removes temp files whose writer process is gone (step 5): a kill -9 mid-write leaves them,
   * and `umoci gc` refuses a layout that has them. A live writer's files are never touched.
   */
  async removeStaleTemps(): Promise<number> {
    let removed = 0;
    const sweep = async (dir: string) => {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        const pid = Number(TEMP.exec(name)?.[1]);
        if (!pid || pid === process.pid || pidAlive(pid)) continue;
        await rm(path.join(dir, name), { recursive: true, force: true });
        removed++;
      }
    };
    await sweep(this.dir);
    const blobs = path.join(this.dir, "blobs");
    for (const alg of await readdir(blobs).catch(() => [] as string[])) await sweep(path.join(blobs, alg));
    return removed;
  }

  /** Removes blobs that were added by a write that then failed (never blobs that existed before). */
  async removeBlobs(digests: Iterable<Digest>): Promise<void> {
    for (const d of digests) await rm(this.blobPath(d), { force: true });
  }

  /**
   * Removes a layout this process created whose first write failed, so no empty or partial
   * layout is left — but only while it is still untouched by anyone else: no tag in
   * index.json and no blob or temp file in it (another writer may have started using it).
   * Returns true when it was removed.
   */
  async removeIfUnused(): Promise<boolean> {
    return withLock(path.join(this.dir, "index.json.lock"), async () => {
      await this.removeStaleTemps();
      const { index } = await this.readIndex();
      if (index.manifests.length > 0) return false;
      const blobs = path.join(this.dir, "blobs");
      for (const alg of await readdir(blobs))
        if ((await readdir(path.join(blobs, alg))).length > 0) return false;
      const names = (await readdir(this.dir)).filter((n) => n !== "index.json.lock");
      if (names.some((n) => !["blobs", "index.json", "oci-layout"].includes(n))) return false;
      for (const n of names) await rm(path.join(this.dir, n), { recursive: true, force: true });
      return true;
    });
  }
}
