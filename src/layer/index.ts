/**
 * Reproducible layers: a tar stream (ustar, PAX only for long names) with sorted entries,
 * explicit parent directories, fixed owners and modes, and one mtime (SOURCE_DATE_EPOCH),
 * compressed with polyarch's own gzip encoder (./deflate.ts) instead of Node's bundled zlib,
 * whose output has changed between releases (nodejs/node#33610, nodejs/node#50138). Same
 * entries → same bytes → same digests, on any Node version.
 */
import {
  closeSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
} from "node:fs";
import { mkdir, open, realpath, rename, rm } from "node:fs/promises";
import path from "node:path";
import { type Descriptor, type Digest, Digester } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import { MediaType } from "../manifest/index.js";
import { GzipEncoder } from "./deflate.js";
import { END_OF_ARCHIVE_BYTES, headerBlocks, paddingOf, type TarHeader, writeHeaderAt } from "./tar.js";

export type EntrySource = { file: string } | { data: Uint8Array };

/** Per-entry owner; absent, the layer's uid/gid (TarOptions) apply. */
export interface Owner {
  uid?: number;
  gid?: number;
}

/**
 * Extended attributes by name (`security.capability`, `user.x`), values base64: written as PAX
 * `SCHILY.xattr.<name>` records, the form containers/storage, BuildKit and GNU tar read.
 */
export type Xattrs = Record<string, string>;

export type LayerEntry =
  | ({ type: "dir"; path: string; mode?: number; xattrs?: Xattrs } & Owner)
  | ({
      type: "file";
      path: string;
      mode: number;
      source: EntrySource;
      size?: number;
      xattrs?: Xattrs;
    } & Owner)
  | ({ type: "symlink"; path: string; target: string } & Owner)
  /** Deletes `path` from the layers below (an OCI whiteout, `.wh.<name>`). */
  | { type: "whiteout"; path: string };

export interface TarOptions {
  /** Seconds since the epoch for every entry (SOURCE_DATE_EPOCH). */
  mtime: number;
  uid: number;
  gid: number;
}

export interface LayerBlob extends Descriptor {
  diffId: Digest;
  /** Where the compressed bytes are. */
  file: string;
}

function tarError(message: string): PolyarchError {
  return new PolyarchError({
    code: "E_TAR",
    message,
    hint: "Check the files you asked to put in the image.",
  });
}

/** Cleans an in-image path to "a/b/c" form and refuses anything that escapes the root. */
export function cleanImagePath(p: string): string {
  if (p.includes("\\") || /^[a-zA-Z]:/.test(p) || p.includes("\0"))
    throw tarError(`unsafe path in layer: "${p}"`);
  // A leading "/" is re-rooted under the image root; ".." that climbs out of it is refused (reliability.md TAR-02).
  const norm = path.posix.normalize(p.replace(/^\/+/, "")).replace(/\/+$/, "");
  if (norm === "" || norm === ".") throw tarError(`empty path in layer: "${p}"`);
  if (norm === ".." || norm.startsWith("../")) throw tarError(`unsafe path in layer: "${p}"`);
  return norm;
}

/** Sorts entries, adds missing parent directories, and refuses duplicates. */
export function normalizeEntries(entries: readonly LayerEntry[]): LayerEntry[] {
  const byPath = new Map<string, LayerEntry>();
  for (const e of entries) {
    const p = cleanImagePath(e.path);
    if (byPath.has(p)) {
      const prev = byPath.get(p)!;
      if (prev.type === "dir" && e.type === "dir") continue;
      throw tarError(`two entries for "${p}" in one layer`);
    }
    byPath.set(p, p === e.path ? e : { ...e, path: p });
  }
  for (const p of [...byPath.keys()]) {
    let dir = path.posix.dirname(p);
    while (dir !== ".") {
      const existing = byPath.get(dir);
      if (existing && existing.type !== "dir")
        throw tarError(`"${dir}" is both a directory and a ${existing.type}`);
      if (!existing) byPath.set(dir, { type: "dir", path: dir });
      dir = path.posix.dirname(dir);
    }
  }
  // Byte order of the UTF-8 path, the same on every machine and locale.
  return [...byPath.values()].sort((a, b) => utf8Order(a.path, b.path));
}

/**
 * Compares two strings as their UTF-8 bytes compare (code point order) without encoding them:
 * UTF-16 code units compare the same way except that surrogates (D800–DFFF, code points above
 * FFFF) must sort after E000–FFFF, so those two ranges swap places before comparing.
 */
export function utf8Order(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Size of the one buffer a stream's tar bytes are written into (a multiple of 512). */
const CHUNK_BYTES = 64 * 1024;

/**
 * Streams the tar bytes of already-normalised entries, in chunks of up to CHUNK_BYTES: headers,
 * small files and padding are written into one buffer, which is handed out when full (a big
 * file's contents are read into it a chunk at a time), so 16,000 small files make a few hundred
 * chunks instead of 50,000 little buffers. A chunk is only valid until the next one is asked
 * for: every consumer hashes or copies each chunk before it asks for the next.
 */
async function* tarStream(entries: readonly LayerEntry[], opts: TarOptions): AsyncGenerator<Uint8Array> {
  const mtime = opts.mtime;
  const out = Buffer.allocUnsafe(CHUNK_BYTES);
  let n = 0;
  // Writers into `out` that stop when it is full: the loops below hand out the full buffer
  // (`n = 0; yield out`) and call again. Plain functions, not generators: a generator per
  // header and padding was an object and an iterator result per call, 16,000 files over.
  /** Copies b[off…] into the buffer as far as it goes; the offset reached. */
  const putFrom = (b: Uint8Array, off: number): number => {
    const k = Math.min(b.length - off, CHUNK_BYTES - n);
    out.set(b.subarray(off, off + k), n);
    n += k;
    return off + k;
  };
  /** Writes up to `count` zero bytes; how many are left to write. */
  const zerosLeft = (count: number): number => {
    const k = Math.min(count, CHUNK_BYTES - n);
    out.fill(0, n, n + k);
    n += k;
    return count - k;
  };
  async function* header(h: TarHeader): AsyncGenerator<Uint8Array> {
    for (const b of headerBlocks(h))
      for (let off = 0; (off = putFrom(b, off)) < b.length;) {
        n = 0;
        yield out;
      }
  }
  for (const e of entries) {
    // Header objects are written out field by field: an object spread per entry made V8 build
    // new hidden classes in old space (16,000 files: tens of MB until a full collection).
    let h: TarHeader;
    let fd: number | undefined;
    if (e.type === "whiteout") {
      const dir = path.posix.dirname(e.path);
      const name = `${dir === "." ? "" : `${dir}/`}.wh.${path.posix.basename(e.path)}`;
      h = { name, type: "file", mode: 0o644, uid: opts.uid, gid: opts.gid, size: 0, mtime };
    } else {
      const uid = e.uid ?? opts.uid;
      const gid = e.gid ?? opts.gid;
      const xattrs =
        e.type !== "symlink" && e.xattrs && Object.keys(e.xattrs).length
          ? Object.entries(e.xattrs).map(([k, v]): [string, Uint8Array] => [k, Buffer.from(v, "base64")])
          : undefined;
      if (e.type === "dir") {
        const mode = e.mode ?? 0o755;
        h = { name: `${e.path}/`, type: "directory", mode, uid, gid, size: 0, mtime, xattrs };
      } else if (e.type === "symlink") {
        const linkname = e.target;
        h = { name: e.path, type: "symlink", linkname, mode: 0o777, uid, gid, size: 0, mtime };
      } else {
        let size: number;
        if ("data" in e.source) size = e.source.data.byteLength;
        else {
          // Read with synchronous calls: from the page cache a read is microseconds, its promise
          // form a thread-pool round trip (four per file with open, stat and close).
          fd = openSync(e.source.file, "r");
          try {
            size = fstatSync(fd).size;
          } catch (err) {
            closeSync(fd);
            throw err;
          }
        }
        h = { name: e.path, type: "file", mode: e.mode, uid, gid, size, mtime, xattrs };
      }
    }
    try {
      // Every entry ends on a block boundary, so a header block fits unless the buffer is full.
      if (n === CHUNK_BYTES) {
        n = 0;
        yield out;
      }
      if (writeHeaderAt(h, out, n)) n += 512;
      else yield* header(h);
      if (e.type !== "file") continue;
      if ("data" in e.source) {
        const data = e.source.data;
        for (let off = 0; (off = putFrom(data, off)) < data.length;) {
          n = 0;
          yield out;
        }
      } else {
        let written = 0;
        for (;;) {
          if (n === CHUNK_BYTES) {
            n = 0;
            yield out;
          }
          const bytesRead = readSync(fd!, out, n, CHUNK_BYTES - n, null);
          if (bytesRead === 0) break;
          written += bytesRead;
          if (written > h.size) break;
          n += bytesRead;
        }
        if (written !== h.size)
          throw tarError(`${e.source.file} changed size while it was written into a layer`);
      }
      for (let left = paddingOf(h.size); (left = zerosLeft(left)) > 0;) {
        n = 0;
        yield out;
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  for (let left = END_OF_ARCHIVE_BYTES; (left = zerosLeft(left)) > 0;) {
    n = 0;
    yield out;
  }
  if (n) yield out.subarray(0, n);
}

/**
 * The uncompressed tar of a layer's entries, streamed (normalised and sorted first). Each chunk
 * is only valid until the next one is asked for (one buffer is filled again): copy what you keep.
 */
export function layerTar(entries: readonly LayerEntry[], opts: TarOptions): AsyncGenerator<Uint8Array> {
  return tarStream(normalizeEntries(entries), opts);
}

/** The diffID (sha256 of the uncompressed tar) without compressing: cheap, used as a cache key. */
export async function diffIdOf(
  entries: readonly LayerEntry[],
  opts: TarOptions,
): Promise<{ diffId: Digest; size: number }> {
  const d = new Digester();
  for await (const c of tarStream(normalizeEntries(entries), opts)) d.update(c);
  return { diffId: d.digest(), size: d.size };
}

/**
 * Writes a gzip-compressed layer to `dest` (via a temp file and rename) and returns its
 * descriptor with the diffID. Memory stays bounded: everything streams.
 */
export async function writeLayer(
  entries: readonly LayerEntry[],
  opts: TarOptions,
  dest: string,
): Promise<LayerBlob> {
  return gzipLayer(tarStream(normalizeEntries(entries), opts), dest);
}

/**
 * Compresses an uncompressed layer tar (any stream of its bytes) with polyarch's encoder into
 * `dest` (via a temp file and rename): the descriptor of the compressed blob and the diffID of
 * the tar. Used for layers polyarch writes and for layers a builder hands back uncompressed.
 */
export async function gzipLayer(tar: AsyncIterable<Uint8Array>, dest: string): Promise<LayerBlob> {
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fh = await open(tmp, "wx", 0o644);
  const uncompressed = new Digester();
  const compressed = new Digester();
  const gz = new GzipEncoder();
  // One write per input chunk, whatever number of blocks it made.
  const flush = async () => {
    const out = gz.take();
    if (!out.length) return;
    const c = out.length === 1 ? out[0]! : Buffer.concat(out);
    compressed.update(c);
    await fh.write(c);
  };
  try {
    for await (const chunk of tar) {
      uncompressed.update(chunk);
      gz.push(chunk);
      await flush();
    }
    gz.finish();
    await flush();
    await fh.sync();
    await fh.close();
    await rename(tmp, dest);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  return layerBlob(compressed, uncompressed, dest);
}

/** The descriptor of a gzip layer written to `file`, from the digests of its two forms. */
export function layerBlob(compressed: Digester, uncompressed: Digester, file: string): LayerBlob {
  return {
    mediaType: MediaType.OCI_LAYER_GZIP,
    digest: compressed.digest(),
    size: compressed.size,
    diffId: uncompressed.digest(),
    file,
  };
}

/**
 * Entries for every file under `root`, placed under `prefix` in the image. Symlinks are kept
 * when their target stays inside `root` and refused otherwise (as ko does for kodata).
 */
export async function entriesFromDirectory(root: string, prefix: string): Promise<LayerEntry[]> {
  const out: LayerEntry[] = [{ type: "dir", path: prefix }];
  const realRoot = await realpath(root);
  // Synchronous metadata calls, as for a build context (see ContextFs).
  function walk(dir: string, rel: string): void {
    const names = readdirSync(dir).sort();
    for (const name of names) {
      const abs = path.join(dir, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const inImage = `${prefix}/${relPath}`;
      const st = lstatSync(abs);
      if (st.isSymbolicLink()) {
        const target = readlinkSync(abs);
        const resolved = path.resolve(path.dirname(abs), target);
        let real = resolved;
        try {
          real = realpathSync(resolved);
        } catch {
          // A dangling link is checked by where it points.
        }
        if (path.isAbsolute(target) || !(real === realRoot || real.startsWith(realRoot + path.sep))) {
          throw new PolyarchError({
            code: "E_TAR",
            message: `symlink ${abs} points outside ${root}`,
            hint: "Static files may only link to files inside their own directory; copy the file instead.",
          });
        }
        out.push({ type: "symlink", path: inImage, target });
      } else if (st.isDirectory()) {
        out.push({ type: "dir", path: inImage });
        walk(abs, relPath);
      } else if (st.isFile()) {
        out.push({
          type: "file",
          path: inImage,
          mode: st.mode & 0o111 ? 0o555 : 0o444,
          source: { file: abs },
          size: st.size,
        });
      } else {
        throw new PolyarchError({
          code: "E_TAR",
          message: `${abs} is not a regular file, directory or symlink`,
          hint: "Remove device nodes, sockets and pipes from the static files directory.",
        });
      }
    }
  }
  walk(root, "");
  return out;
}
