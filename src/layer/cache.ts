/**
 * The layer cache every builder shares: compressed layers by diffID, the diffID remembered per
 * stat fingerprint of the input files, and housekeeping on Go's GOCACHE rule.
 *
 * Housekeeping for the build cache (compressed layers, their index, stat fingerprints and
 * per-platform binaries), on Go's own rule for GOCACHE: an entry unused for five days goes,
 * checked at most once a day, and use refreshes an entry's mtime at most once an hour, so a
 * build does not rewrite metadata on every hit. Manifest lists kept under the same root are
 * user data and never touched.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { type Digest, digestHex, isDigest } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import type { FileLayer } from "../image/assemble.js";
import { ENCODER_ID } from "./deflate.js";
import { diffIdOf, type LayerEntry, type TarOptions } from "./index.js";
import type { LayerPool } from "./pool.js";

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Unused for this long, an entry is removed. */
export const TRIM_AFTER = 5 * DAY;
/** Interrupted writes leave temp files; a day is far longer than any build. */
const TMP_AFTER = DAY;
const TRIM_MARKER = "trim.txt";

/** Marks a cache entry as used (its mtime), unless that was done within the hour. */
export async function markUsed(file: string, now = Date.now()): Promise<void> {
  const st = await stat(file).catch(() => undefined);
  if (!st || now - st.mtimeMs < HOUR) return;
  const t = new Date(now);
  await utimes(file, t, t).catch(() => {});
}

/**
 * Removes what has not been used for TRIM_AFTER, at most once a day (trim.txt records the
 * last run). Returns how many entries went, or undefined when it was not yet time.
 */
export async function trimCache(cacheDir: string, now = Date.now()): Promise<number | undefined> {
  const marker = path.join(cacheDir, TRIM_MARKER);
  const last = await stat(marker).catch(() => undefined);
  if (last && now - last.mtimeMs < DAY) return undefined;
  await writeFile(marker, `${Math.floor(now / 1000)}\n`).catch(() => {});
  let removed = 0;
  const old = async (p: string, age: number) => {
    const st = await stat(p).catch(() => undefined);
    return st !== undefined && now - st.mtimeMs > age;
  };
  const sweep = async (dir: string, age: number, recurse = false): Promise<void> => {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const p = path.join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory() && recurse) {
        await sweep(p, age, false);
      } else if (now - st.mtimeMs > age) {
        await rm(p, { recursive: true, force: true });
        removed++;
      }
    }
  };
  await sweep(path.join(cacheDir, "stat"), TRIM_AFTER);
  // layers/<encoder>/<diffID>; entries of older encoders are never used again, so they age out.
  await sweep(path.join(cacheDir, "layers"), TRIM_AFTER, true);
  await sweep(path.join(cacheDir, "blobs", "sha256"), TRIM_AFTER);
  await sweep(path.join(cacheDir, "tmp"), TMP_AFTER);
  // Results of delegated Dockerfile stages: needed only until the build that made them publishes.
  await sweep(path.join(cacheDir, "delegated"), TMP_AFTER);
  // Delegated stages' results kept by key for rebuilds; a hit marks one used.
  await sweep(path.join(cacheDir, "delegated-results"), TRIM_AFTER);
  // Go module downloads that succeeded, by the hash of go.mod, go.sum and the settings.
  await sweep(path.join(cacheDir, "modules"), TRIM_AFTER);
  // Unpacked image layers for native Dockerfile steps; a hit marks <key>/records.json used.
  for (const name of await readdir(path.join(cacheDir, "trees")).catch(() => [] as string[])) {
    const entry = path.join(cacheDir, "trees", name);
    const index = path.join(entry, "records.json");
    const kept = !name.startsWith(".tmp-") && (await stat(index).catch(() => undefined));
    if (await old(kept ? index : entry, kept ? TRIM_AFTER : TMP_AFTER)) {
      await rm(entry, { recursive: true, force: true });
      removed++;
    }
  }
  // bin/<package>/<platform>/: Go rewrites (or re-touches) the binary on every build of it.
  for (const pkg of await readdir(path.join(cacheDir, "bin")).catch(() => [] as string[])) {
    const pkgDir = path.join(cacheDir, "bin", pkg);
    for (const plat of await readdir(pkgDir).catch(() => [] as string[])) {
      const platDir = path.join(pkgDir, plat);
      const files = await readdir(platDir).catch(() => [] as string[]);
      const ages = await Promise.all(files.map((f) => old(path.join(platDir, f), TRIM_AFTER)));
      if (ages.every(Boolean) && (await old(platDir, TRIM_AFTER))) {
        await rm(platDir, { recursive: true, force: true });
        removed++;
      }
    }
    if ((await readdir(pkgDir).catch(() => ["?"])).length === 0)
      await rm(pkgDir, { recursive: true, force: true });
  }
  return removed;
}

/** Layers by content, kept under one cache directory and shared by every builder. */
export class LayerCache {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  /** The compressed blob cached for `diffId`, if it is still there and whole. */
  async #fromCache(
    diffId: Digest,
    createdBy: string,
  ): Promise<(FileLayer & { cached: boolean }) | undefined> {
    const cacheDir = this.dir;
    const cached = await readFile(layerIndexFile(cacheDir, diffId), "utf8")
      .then((s) => JSON.parse(s) as { mediaType: string; digest: Digest; size: number })
      .catch(() => undefined);
    if (!cached) return undefined;
    const file = path.join(cacheDir, "blobs", "sha256", digestHex(cached.digest));
    const st = await stat(file).catch(() => undefined);
    if (st?.size !== cached.size) return undefined;
    await Promise.all([markUsed(layerIndexFile(cacheDir, diffId)), markUsed(file)]);
    return { ...cached, diffId, file, createdBy, cached: true };
  }

  /**
   * A layer keyed by its diffID: compressing is the expensive part, so an unchanged tar reuses
   * the compressed blob from the cache (it is verified again when stored in an output). The
   * diffID itself is remembered per stat fingerprint of the input files (device, inode, size,
   * mtime, ctime — git's index trick), so a no-change rebuild does not even re-hash binaries.
   */
  async layer(
    entries: LayerEntry[],
    tarOpts: TarOptions,
    createdBy: string,
    pool: LayerPool,
  ): Promise<FileLayer & { cached: boolean }> {
    // Whether the cache was empty is read before this process adds anything to it.
    void this.#empty();
    // The same layer asked for at once (one COPY in every platform's build) is made once.
    const fp = await fingerprint(entries, tarOpts);
    let p = this.#inflight.get(fp.key);
    if (!p) {
      p = this.#layer(entries, tarOpts, createdBy, pool, fp);
      this.#inflight.set(fp.key, p);
      p.then(
        () => this.#inflight.delete(fp.key),
        () => this.#inflight.delete(fp.key),
      );
    }
    const l = await p;
    return { ...l, createdBy };
  }

  readonly #inflight = new Map<string, Promise<FileLayer & { cached: boolean }>>();
  #emptyP: Promise<boolean> | undefined;

  /**
   * True when the cache held no compressed layer of this encoder when this process first
   * asked for a layer (checked once): layers this process adds are found by #inflight.
   */
  #empty(): Promise<boolean> {
    this.#emptyP ??= readdir(path.join(this.dir, "layers", ENCODER_ID)).then(
      (n) => n.length === 0,
      () => true,
    );
    return this.#emptyP;
  }

  async #layer(
    entries: LayerEntry[],
    tarOpts: TarOptions,
    createdBy: string,
    pool: LayerPool,
    fp: { key: string; goBinary: boolean },
  ): Promise<FileLayer & { cached: boolean }> {
    const cacheDir = this.dir;
    const fpFile = path.join(cacheDir, "stat", fp.key);
    let diffId = await readFile(fpFile, "utf8").then(
      (s) => (isDigest(s.trim()) ? (s.trim() as Digest) : undefined),
      () => undefined,
    );
    const known = diffId !== undefined;
    // A Go binary whose build ID this cache has never seen is new content: compressing it
    // directly beats hashing it first only to miss. Other files (a new checkout's static
    // files, say) are hashed first, since that is much cheaper than compressing.
    // With no compressed layer cached at all (a cold cache) a hit is impossible: skip the pass.
    if (!diffId && !fp.goBinary && !(await this.#empty())) diffId = (await diffIdOf(entries, tarOpts)).diffId;
    if (diffId) {
      const hit = await this.#fromCache(diffId, createdBy);
      if (hit) {
        // A known fingerprint only needs marking as used; a new one is recorded.
        await (known ? markUsed(fpFile) : writeAtomic(fpFile, diffId));
        return hit;
      }
    }
    const tmp = path.join(
      cacheDir,
      "tmp",
      `${fp.key.slice(0, 16)}-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    const blob = await pool.writeLayer(entries, tarOpts, tmp);
    if (diffId && blob.diffId !== diffId) {
      await rm(tmp, { force: true });
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `layer tar changed while it was written (${diffId} then ${blob.diffId})`,
        hint: "A file changed during the build; build again.",
      });
    }
    diffId = blob.diffId;
    const file = path.join(cacheDir, "blobs", "sha256", digestHex(blob.digest));
    await mkdir(path.dirname(file), { recursive: true });
    await rename(tmp, file);
    await writeAtomic(
      layerIndexFile(cacheDir, diffId),
      JSON.stringify({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size }),
    );
    // Remember the fingerprint only if the files did not change while they were read.
    if ((await fingerprint(entries, tarOpts)).key === fp.key) await writeAtomic(fpFile, diffId);
    return {
      mediaType: blob.mediaType,
      digest: blob.digest,
      size: blob.size,
      diffId,
      file,
      createdBy,
      cached: false,
    };
  }

  /** Housekeeping, at most once a day (see trimCache). */
  trim(): Promise<number | undefined> {
    return trimCache(this.dir).catch(() => undefined);
  }
}

/**
 * Bump when the tar format changes, so old fingerprints are not reused. The gzip encoder's
 * own version (ENCODER_ID) keys the diffID → blob index, so a new encoder never picks up
 * blobs an older one compressed.
 */
const LAYER_FORMAT = "polyarch-layer-1";

/** Files smaller than this are not read for a Go build ID. */
const MIN_GO_BINARY = 256 * 1024;

function layerIndexFile(cacheDir: string, diffId: Digest): string {
  return path.join(cacheDir, "layers", ENCODER_ID, digestHex(diffId));
}

/**
 * A key for "same entries, same files on disk, same options", from metadata only, and
 * whether a Go binary (keyed by its build ID) is among the files. Synchronous file calls:
 * a stat is microseconds, its promise a thread-pool round trip (16,000 files: seconds).
 */
async function fingerprint(
  entries: readonly LayerEntry[],
  opts: TarOptions,
): Promise<{ key: string; goBinary: boolean }> {
  let goBinary = false;
  const h = createHash("sha256").update(`${LAYER_FORMAT}\0${JSON.stringify(opts)}\0`);
  for (const e of entries) {
    if (e.type === "whiteout") {
      h.update(`w\0${e.path}\0`);
      continue;
    }
    // Owners only when given, so keys of layers without them are what they always were.
    if (e.uid !== undefined || e.gid !== undefined) h.update(`o\0${e.uid ?? ""}:${e.gid ?? ""}\0`);
    if (e.type !== "symlink" && e.xattrs && Object.keys(e.xattrs).length)
      h.update(`x\0${JSON.stringify(Object.entries(e.xattrs).sort(([a], [b]) => (a < b ? -1 : 1)))}\0`);
    if (e.type === "file") {
      if ("file" in e.source) {
        // Plain numbers: mtimeMs and ctimeMs keep well under a microsecond, and BigInt stats
        // made a few hundred bytes of garbage per file (tens of MB over 16,000 files).
        const st = statSync(e.source.file);
        // No Go binary is this small (a stripped hello world is over 1 MB): not opened.
        const buildId = st.size >= MIN_GO_BINARY ? readGoBuildId(e.source.file) : undefined;
        if (buildId) goBinary = true;
        // Go re-touches an up-to-date binary's mtime, so its build ID (whose last part hashes
        // the linked file) is the stable key; other files use their stat identity.
        h.update(
          buildId
            ? `g\0${e.path}\0${e.mode}\0${buildId}\0${st.size}\0`
            : `f\0${e.path}\0${e.mode}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}\0`,
        );
      } else {
        h.update(`d\0${e.path}\0${e.mode}\0`).update(e.source.data).update("\0");
      }
    } else if (e.type === "symlink") {
      h.update(`l\0${e.path}\0${e.target}\0`);
    } else {
      h.update(`D\0${e.path}\0${e.mode ?? ""}\0`);
    }
  }
  return { key: h.digest("hex"), goBinary };
}

/**
 * The Go build ID of a binary, found as cmd/go finds it: in ELF files the `.note.go.buildid`
 * note (name "Go\0\0", type 4, either byte order), otherwise the marker `\xff Go build ID: "`;
 * both sit within the first 32 KiB. Returns undefined for other files (or -buildid=).
 */
export function readGoBuildId(file: string): string | undefined {
  const fd = openSync(file, "r");
  let head: Buffer;
  try {
    const buf = Buffer.alloc(32 * 1024);
    head = buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
  } finally {
    closeSync(fd);
  }
  const valid = (id: string) => (/^[A-Za-z0-9_/=-]{20,}$/.test(id) ? id : undefined);
  const name = Buffer.from("Go\0\0", "latin1");
  for (let at = head.indexOf(name); at >= 12; at = head.indexOf(name, at + 1)) {
    for (const le of [true, false]) {
      const u32 = (o: number) => (le ? head.readUInt32LE(o) : head.readUInt32BE(o));
      if (u32(at - 12) !== 4 || u32(at - 4) !== 4) continue;
      const size = u32(at - 8);
      if (size > 0 && size < 512 && at + 4 + size <= head.length)
        return valid(head.subarray(at + 4, at + 4 + size).toString("latin1"));
    }
  }
  const marker = Buffer.from('\xff Go build ID: "', "latin1");
  const m = head.indexOf(marker);
  if (m < 0) return undefined;
  const end = head.indexOf(0x22, m + marker.length);
  return end < 0 ? undefined : valid(head.subarray(m + marker.length, end).toString("latin1"));
}

async function writeAtomic(file: string, data: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
