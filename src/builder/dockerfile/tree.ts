/**
 * A stage's root file system as metadata, so native steps can act on it without a process:
 * paths with type, mode, owner and where the bytes are. It is built from the base image's
 * layers (tar, gzip; OCI whiteouts `.wh.<name>` and opaque directories `.wh..wh..opq`
 * applied), then from each native step's own entries. File contents of base layers are
 * spooled to a scratch directory, never held in memory.
 */
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { PolyarchError } from "../../errors.js";
import type { BaseLayer } from "../../image/assemble.js";
import { type LayerCache, markUsed } from "../../layer/cache.js";
import { cleanImagePath, type EntrySource, type LayerEntry, type Xattrs } from "../../layer/index.js";
import { MediaType } from "../../manifest/index.js";
import { digestHex } from "../../digest/index.js";

export interface Node {
  type: "dir" | "file" | "symlink";
  /** Permission bits, with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  source?: EntrySource;
  target?: string;
  /** Extended attributes, values base64 (LOSSY_XATTR where the layer's bytes could not be read). */
  xattrs?: Xattrs;
}

/**
 * An xattr value tar-stream could not read as bytes (it decodes PAX values as UTF-8): such a
 * file is not written again natively, so its attribute is never carried corrupted.
 */
export const LOSSY_XATTR = "!";

/** A path inside the image in the tree's key form: "" is the root, else "a/b". */
export function treeKey(p: string): string {
  const t = p.replace(/^\/+/, "").replace(/\/+$/, "");
  return t === "" || t === "." ? "" : cleanImagePath(t);
}

/** The key of a key's parent directory ("" for the root's children). */
export function parentKey(key: string): string {
  const d = path.posix.dirname(key);
  return d === "." ? "" : d;
}

export class Tree {
  readonly nodes = new Map<string, Node>([["", { type: "dir", mode: 0o755, uid: 0, gid: 0 }]]);

  get(key: string): Node | undefined {
    return this.nodes.get(key);
  }

  /** Children keys of a directory key. */
  children(key: string): string[] {
    const prefix = key === "" ? "" : `${key}/`;
    return [...this.nodes.keys()].filter(
      (k) => k !== key && k.startsWith(prefix) && !k.slice(prefix.length).includes("/"),
    );
  }

  /** Every key under a directory key (not the key itself). */
  descendants(key: string): string[] {
    const prefix = key === "" ? "" : `${key}/`;
    return [...this.nodes.keys()].filter((k) => k !== key && k.startsWith(prefix));
  }

  remove(key: string): void {
    for (const k of this.descendants(key)) this.nodes.delete(k);
    this.nodes.delete(key);
  }

  set(key: string, node: Node): void {
    const existing = this.nodes.get(key);
    if (existing && existing.type === "dir" && node.type !== "dir") this.remove(key);
    this.nodes.set(key, node);
  }

  /**
   * Resolves symlinks in a path as the kernel would inside the image root (a link to /usr/bin
   * stays in the image); with `followLast`, the last component too. Returns the key.
   */
  resolve(p: string, followLast = true, depth = 0): string {
    if (depth > 40) throw fsError(`too many levels of symbolic links at ${p}`);
    const parts = treeKey(p).split("/").filter(Boolean);
    let cur = "";
    for (let i = 0; i < parts.length; i++) {
      const next = cur === "" ? parts[i]! : `${cur}/${parts[i]}`;
      const n = this.nodes.get(next);
      const last = i === parts.length - 1;
      if (n?.type === "symlink" && (!last || followLast)) {
        const target = n.target!.startsWith("/") ? n.target! : path.posix.join("/", cur, n.target!);
        const rest = parts.slice(i + 1).join("/");
        return this.resolve(rest ? `${target}/${rest}` : target, followLast, depth + 1);
      }
      cur = next;
    }
    return cur;
  }

  /** The parents of a key that the tree has, root first, as layer entries keeping their metadata. */
  parentEntries(key: string): LayerEntry[] {
    const out: LayerEntry[] = [];
    let dir = path.posix.dirname(key);
    while (dir !== "." && dir !== "") {
      const n = this.nodes.get(dir);
      out.push({
        type: "dir",
        path: dir,
        mode: n?.type === "dir" ? n.mode : 0o755,
        uid: n?.uid ?? 0,
        gid: n?.gid ?? 0,
      });
      dir = path.posix.dirname(dir);
    }
    return out.reverse();
  }

  /** The layer entry that writes a node as it is now. */
  entry(key: string): LayerEntry {
    const n = this.nodes.get(key);
    if (!n) return { type: "whiteout", path: key };
    // Literals without spreads: called per file, and a spread per call made V8 build new
    // hidden classes each time (see tarStream).
    const e: LayerEntry =
      n.type === "dir"
        ? { type: "dir", path: key, mode: n.mode, uid: n.uid, gid: n.gid }
        : n.type === "symlink"
          ? { type: "symlink", path: key, target: n.target!, uid: n.uid, gid: n.gid }
          : { type: "file", path: key, mode: n.mode, source: n.source!, uid: n.uid, gid: n.gid };
    if (e.type !== "symlink" && n.xattrs && Object.keys(n.xattrs).length) e.xattrs = n.xattrs;
    return e;
  }

  /** The fields of a user's or group's line in the tree's /etc/passwd or /etc/group. */
  async account(file: "etc/passwd" | "etc/group", name: string): Promise<string[] | undefined> {
    return this.accountBy(file, (f) => f[0] === name);
  }

  /** The fields of the first line of /etc/passwd or /etc/group that `match` accepts. */
  async accountBy(
    file: "etc/passwd" | "etc/group",
    match: (fields: string[]) => boolean,
  ): Promise<string[] | undefined> {
    return (await this.#lines(file)).find(match);
  }

  /** The ids of the groups /etc/group lists a user as a member of. */
  async memberships(user: string): Promise<number[]> {
    return (await this.#lines("etc/group"))
      .filter((f) => (f[3] ?? "").split(",").includes(user) && /^[0-9]+$/.test(f[2] ?? ""))
      .map((f) => Number(f[2]));
  }

  async #lines(file: "etc/passwd" | "etc/group"): Promise<string[][]> {
    const n = this.nodes.get(this.resolve(file));
    if (!n || n.type !== "file" || !n.source) return [];
    const bytes = "data" in n.source ? n.source.data : await readFile(n.source.file);
    return Buffer.from(bytes)
      .toString("utf8")
      .split("\n")
      .map((line) => line.split(":"));
  }

  /** A user's or group's numeric id, by name. */
  async lookup(file: "etc/passwd" | "etc/group", name: string): Promise<number | undefined> {
    const id = (await this.account(file, name))?.[2];
    return id !== undefined && /^[0-9]+$/.test(id) ? Number(id) : undefined;
  }

  /**
   * Applies a tar stream (gzip when `gz`) to the tree as ADD extracts an archive, under
   * `prefix`, with `own` replacing the owners. Returns the keys it wrote.
   */
  async applyTar(
    source: AsyncIterable<Uint8Array>,
    gz: boolean,
    spool: string,
    seq: { n: number },
    opts: { prefix?: string; own?: { uid: number; gid: number } } = {},
  ): Promise<string[]> {
    return this.applyRecords(await readTar(source, gz, spool, seq), opts);
  }

  /**
   * Applies a tar's records: with `whiteouts` as an image layer (`.wh.` entries delete, an
   * opaque marker empties its directory); otherwise under `prefix` with `own` as the owners.
   * Returns the keys it wrote.
   */
  applyRecords(
    records: readonly TarRecord[],
    opts: { whiteouts?: boolean; prefix?: string; own?: { uid: number; gid: number } } = {},
  ): string[] {
    const hardlinks: [string, string][] = [];
    const written: string[] = [];
    const under = (name: string) => treeKey(opts.prefix ? `${opts.prefix}/${treeKey(name)}` : name);
    for (const [name, kind, mode, uid, gid, extra, xattrs] of records) {
      const key = under(name);
      const base = path.posix.basename(key);
      const dir = parentKey(key);
      if (opts.whiteouts && base === ".wh..wh..opq") {
        for (const k of this.descendants(dir)) this.nodes.delete(k);
        continue;
      }
      if (opts.whiteouts && base.startsWith(".wh.")) {
        this.remove(dir === "" ? base.slice(4) : `${dir}/${base.slice(4)}`);
        continue;
      }
      const meta = {
        mode,
        uid: opts.own?.uid ?? uid,
        gid: opts.own?.gid ?? gid,
        ...(xattrs ? { xattrs } : {}),
      };
      if (kind === "d") this.set(key, { type: "dir", ...meta });
      else if (kind === "l") this.set(key, { type: "symlink", ...meta, target: String(extra ?? "") });
      else if (kind === "h") {
        hardlinks.push([key, under(String(extra ?? ""))]);
        continue;
      } else this.set(key, { type: "file", ...meta, source: { file: String(extra) } });
      if (key === "") continue;
      written.push(key);
      for (const p of this.parentEntries(key))
        if (!this.nodes.has(p.path)) {
          this.nodes.set(p.path, { type: "dir", mode: 0o755, uid: 0, gid: 0 });
          written.push(p.path);
        }
    }
    for (const [key, target] of hardlinks) {
      const t = this.nodes.get(target);
      if (t) {
        this.set(key, { ...t });
        written.push(key);
      }
    }
    return written;
  }
}

/**
 * One tar entry as the tree needs it: name, kind (d dir, f file, l symlink, h hard link),
 * mode, uid, gid, and the file's spooled path, the link's target or the hard link's name.
 * Devices and fifos are left out: nothing native steps touch.
 */
export type TarRecord = [string, "d" | "f" | "l" | "h", number, number, number, string?, Xattrs?];

/** The SCHILY.xattr.* records of an entry's PAX header, values base64 (LOSSY_XATTR when not bytes). */
function paxXattrs(pax: Record<string, string> | null | undefined): Xattrs | undefined {
  let out: Xattrs | undefined;
  for (const [k, v] of Object.entries(pax ?? {}))
    if (k.startsWith("SCHILY.xattr.")) {
      out ??= {};
      out[k.slice("SCHILY.xattr.".length)] = v.includes("\uFFFD")
        ? LOSSY_XATTR
        : Buffer.from(v).toString("base64");
    }
  return out;
}

/** Reads a tar (gzip when `gz`) into records, its files' contents spooled under `spool`. */
export async function readTar(
  source: AsyncIterable<Uint8Array>,
  gz: boolean,
  spool: string,
  seq: { n: number },
): Promise<TarRecord[]> {
  const { extract } = await import("tar-stream");
  const ex = extract();
  const records: TarRecord[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      const meta = [(h.mode ?? 0o644) & 0o7777, h.uid ?? 0, h.gid ?? 0] as const;
      const x = paxXattrs(h.pax as Record<string, string> | undefined);
      if (h.type === "directory") records.push(x ? [h.name, "d", ...meta, "", x] : [h.name, "d", ...meta]);
      else if (h.type === "symlink") records.push([h.name, "l", ...meta, h.linkname ?? ""]);
      else if (h.type === "link") records.push([h.name, "h", ...meta, h.linkname ?? ""]);
      else if (h.type === "file" || h.type === "contiguous-file") {
        const file = path.join(spool, String(seq.n++));
        await pipeline(entry, createWriteStream(file));
        records.push(x ? [h.name, "f", ...meta, file, x] : [h.name, "f", ...meta, file]);
        continue;
      }
      entry.resume();
    }
  })();
  const src = (async function* () {
    yield* source;
  })();
  const feed = gz ? pipeline(src, createGunzip(), ex) : pipeline(src, ex);
  await Promise.all([feed, done]);
  return records;
}

/** A base layer's records (tar or tar+gzip), contents spooled under `spool`. */
async function readLayer(layer: BaseLayer, spool: string, seq: { n: number }): Promise<TarRecord[]> {
  const gz = layer.mediaType === MediaType.OCI_LAYER_GZIP || layer.mediaType === MediaType.DOCKER_LAYER_GZIP;
  const plain =
    layer.mediaType === MediaType.OCI_LAYER ||
    layer.mediaType === "application/vnd.docker.image.rootfs.diff.tar";
  if (!gz && !plain)
    throw new PolyarchError({
      code: "E_MEDIA_TYPE",
      message: `a native step cannot read base layer ${layer.digest} (${layer.mediaType})`,
      hint: "Native Dockerfile steps read tar and tar+gzip layers; use such a base.",
    });
  return readTar(layer.open(), gz, spool, seq);
}

function fsError(message: string): PolyarchError {
  return new PolyarchError({ code: "E_INPUT", message, hint: "Check the paths the Dockerfile step uses." });
}

/**
 * Where spooled contents go: one directory and one counter for every stage and platform of a
 * build, so no two spooled files ever share a name; and where the trees of images are kept.
 */
export interface Spool {
  dir: string;
  seq: { n: number };
  /** Base images' trees (their unpacked layers, kept in the build cache). */
  trees: TreeStore;
}

/** A scratch directory for spooled contents, removed with `close`. */
export async function spoolDir(trees: TreeStore): Promise<Spool & { close: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "polyarch-df-"));
  await mkdir(dir, { recursive: true });
  return {
    dir,
    seq: { n: 0 },
    trees,
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * The unpacked layers of images, kept by diffID under the build cache: each layer's records in
 * records.json (files by number), the files' contents beside it. A tree is the replay of its
 * layers' records, so reading a large stage again (a Go toolchain, a delegated build stage's
 * result) is a JSON parse instead of unpacking hundreds of megabytes; a layer two images share
 * (the toolchain under every platform's build stage) is unpacked once; and the files keep their
 * identity on disk, so the layers COPY --from makes of them are found in the layer cache by
 * stat fingerprint without being read. A layer is unpacked into a temporary directory and
 * renamed into place whole; one unused for five days is trimmed.
 */
export class TreeStore {
  readonly dir: string;
  readonly #inflight = new Map<string, Promise<TarRecord[]>>();
  constructor(dir: string) {
    this.dir = dir;
  }

  /** The store beside a layer cache (`<cache>/trees`, where the cache's trim looks). */
  static of(cache: LayerCache): TreeStore {
    return new TreeStore(path.join(cache.dir, "trees"));
  }

  /** The tree of these layers, applied in order. Each call gets its own tree. */
  async tree(layers: readonly BaseLayer[]): Promise<Tree> {
    const t = new Tree();
    for (const l of layers) t.applyRecords(await this.records(l), { whiteouts: true });
    return t;
  }

  /** A layer's records with absolute file paths: kept, or unpacked now and kept. */
  records(layer: BaseLayer): Promise<TarRecord[]> {
    const key = `${FORMAT}-${digestHex(layer.diffId)}`;
    let p = this.#inflight.get(key);
    if (!p) {
      p = this.#load(key, layer);
      this.#inflight.set(key, p);
      p.catch(() => this.#inflight.delete(key));
    }
    return p;
  }

  async #load(key: string, layer: BaseLayer): Promise<TarRecord[]> {
    const entry = path.join(this.dir, key);
    const index = path.join(entry, "records.json");
    const kept = await readFile(index, "utf8").then(
      (s) => JSON.parse(s) as TarRecord[],
      () => undefined,
    );
    if (kept) {
      await markUsed(index);
      return kept.map((r) => (r[1] === "f" ? withFile(r, path.join(entry, "files", r[5]!)) : r));
    }
    await mkdir(this.dir, { recursive: true });
    const tmp = await mkdtemp(path.join(this.dir, `.tmp-${key.slice(0, 24)}-`));
    try {
      const files = path.join(tmp, "files");
      await mkdir(files);
      const records = await readLayer(layer, files, { n: 0 });
      const relative = records.map((r) => (r[1] === "f" ? withFile(r, path.basename(r[5]!)) : r));
      await writeFile(path.join(tmp, "records.json"), JSON.stringify(relative));
      // Another build may have kept the same layer meanwhile: either serves.
      if (
        !(await rename(tmp, entry).then(
          () => true,
          () => false,
        ))
      ) {
        await rm(tmp, { recursive: true, force: true });
        if (!(await stat(index).catch(() => undefined))) throw new Error(`cannot keep ${entry}`);
      }
      return relative.map((r) => (r[1] === "f" ? withFile(r, path.join(entry, "files", r[5]!)) : r));
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }
}

/** Bump when records.json changes. */
const FORMAT = "l2";

function withFile(r: TarRecord, file: string): TarRecord {
  return r[6] ? [r[0], r[1], r[2], r[3], r[4], file, r[6]] : [r[0], r[1], r[2], r[3], r[4], file];
}
