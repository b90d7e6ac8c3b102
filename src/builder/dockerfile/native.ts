/**
 * Native steps (issue 9 §3): polyarch carries out every instruction that needs no process,
 * and the RUN commands of trivial.ts, on a stage's tree. Each step that changes files
 * becomes one reproducible layer holding the changed paths and their parents (with the
 * parents' own metadata), through the shared layer cache; the others change the config.
 * Semantics follow BuildKit: COPY gives new files uid/gid 0 unless --chown, keeps the source
 * mode unless --chmod, copies a directory's contents (not the directory), and treats the
 * destination as a directory when it ends in "/" or several sources are given.
 */
import path from "node:path";
import { addContext, PolyarchError } from "../../errors.js";
import type { BaseImage, FileLayer } from "../../image/assemble.js";
import type { LayerCache } from "../../layer/cache.js";
import type { LayerEntry, TarOptions } from "../../layer/index.js";
import type { LayerPool } from "../../layer/pool.js";
import type { ImageConfig } from "../../manifest/index.js";
import type { Platform } from "../../platform/index.js";
import { ContextFs, expandSource, patternRegex, type SourceFs, TreeFs } from "./context.js";
import { type Dockerfile, type Instruction, syntaxError } from "./parse.js";
import type { StagePlan, StepPlan } from "./plan.js";
import { expandHeredoc, keyValues, processWord, processWords } from "./shell.js";
import { LOSSY_XATTR, type Node, parentKey, type Spool, Tree, treeKey } from "./tree.js";
import { type FileCaps, type FsOp, posixShell } from "./trivial.js";
import { DownloadFs, download, isHttpSource, parseChecksum, urlFilename } from "./remote.js";

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Config = NonNullable<ImageConfig["config"]>;

export interface HistoryEntry {
  created_by: string;
  empty_layer?: boolean;
}

/** What a stage is after its steps: the base it started from, its layers, tree and config. */
export class StageState {
  readonly platform: Platform;
  base: BaseImage | undefined;
  layers: FileLayer[] = [];
  config: Config;
  author: string | undefined;
  history: HistoryEntry[] = [];
  /** Whether CMD was set in this stage (an ENTRYPOINT after it keeps it). */
  cmdSet = false;
  /** ARG values in scope (expansion sees ENV first, then these). */
  args = new Map<string, string>();
  #tree: Tree | undefined;
  readonly #spool: Spool;

  /** Where spooled contents go (base layers, ADD archives). */
  get spoolDir(): string {
    return this.#spool.dir;
  }
  get spoolSeq(): { n: number } {
    return this.#spool.seq;
  }

  constructor(platform: Platform, spool: Spool, base?: BaseImage) {
    this.platform = platform;
    this.base = base;
    this.config = structuredClone(base?.config.config ?? {});
    this.#spool = spool;
    if (!(this.config.Env ?? []).some((e) => e.startsWith("PATH=")))
      this.config.Env = [DEFAULT_PATH, ...(this.config.Env ?? [])];
  }

  /** Layers being written; steps go on meanwhile (the tree is already up to date). */
  readonly #pending: Promise<unknown>[] = [];

  /** Adds a layer that is still being compressed; its place in the order is kept. */
  addLayer(p: Promise<FileLayer>): void {
    const slot = this.layers.length;
    this.layers.push(undefined as unknown as FileLayer);
    const done = p.then((l) => {
      this.layers[slot] = l;
    });
    done.catch(() => {}); // surfaced by settle()
    this.#pending.push(done);
  }

  /** Waits for every layer; the first failure is thrown. */
  async settle(): Promise<void> {
    await Promise.all(this.#pending);
  }

  /** A copy for `FROM <stage>`: the same files, layers and config, its own from here on. */
  async fork(): Promise<StageState> {
    await this.settle();
    const s = new StageState(this.platform, this.#spool, this.base);
    s.layers = [...this.layers];
    s.config = structuredClone(this.config);
    s.author = this.author;
    s.history = [...this.history];
    const t = new Tree();
    for (const [k, n] of (await this.tree()).nodes) t.nodes.set(k, { ...n });
    s.#tree = t;
    return s;
  }

  /** The tree, built from the base's layers on first use. */
  async tree(): Promise<Tree> {
    if (!this.#tree) {
      this.#tree = await this.#spool.trees.tree(this.base?.layers ?? []);
    }
    return this.#tree;
  }

  /** Variables for expansion: the config's Env over the ARGs. */
  vars(): Map<string, string> {
    const v = new Map(this.args);
    for (const e of this.config.Env ?? []) {
      const i = e.indexOf("=");
      if (i > 0) v.set(e.slice(0, i), e.slice(i + 1));
    }
    return v;
  }

  workdir(): string {
    return this.config.WorkingDir || "/";
  }
}

export interface NativeDeps {
  df: Dockerfile;
  context: ContextFs;
  /** Finished stages, by index, for COPY --from. */
  stages: ReadonlyMap<number, StageState>;
  cache: LayerCache;
  pool: LayerPool;
  tarOpts: TarOptions;
  /** False for a stage only read from (COPY --from): its files matter, its layers do not. */
  layers: boolean;
  /** The file tree of an image (COPY --from=<image>) for a platform. */
  imageTree: (ref: string, platform: Platform) => Promise<Tree>;
  /** Told about each layer once it is written (a registry push may start with it). */
  onLayer?: (layer: FileLayer & { cached: boolean }) => void;
  signal?: AbortSignal;
}

/** A step that polyarch cannot carry out itself: the caller hands the stage to a builder. */
export class NeedsBuilder extends Error {
  constructor(
    readonly step: Instruction,
    readonly why: string,
  ) {
    super(why);
  }
}

function at(df: Dockerfile, ins: Instruction, message: string, hint?: string): PolyarchError {
  return syntaxError(df.file, ins.line, message, hint ?? "Fix that instruction.");
}

function setEnv(cfg: Config, key: string, value: string): void {
  const env = (cfg.Env ?? []).filter((e) => !e.startsWith(`${key}=`) && e !== key);
  const i = (cfg.Env ?? []).findIndex((e) => e.startsWith(`${key}=`));
  if (i >= 0) env.splice(i, 0, `${key}=${value}`);
  else env.push(`${key}=${value}`);
  cfg.Env = env;
}

function execForm(ins: Instruction, cfg: Config): string[] {
  return ins.json ?? [...(cfg.Shell ?? ["/bin/sh", "-c"]), ins.args];
}

function duration(df: Dockerfile, ins: Instruction, v: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  let seen = "";
  for (const m of v.matchAll(re)) {
    total += Number(m[1]) * unit[m[2]!]!;
    seen += m[0];
  }
  if (seen !== v || v === "")
    throw at(df, ins, `HEALTHCHECK: "${v}" is not a duration`, "Write durations like 30s, 1m30s or 500ms.");
  return Math.round(total);
}

/** Resolves a user[:group] spec to numbers, by name through the stage's /etc/passwd and /etc/group. */
async function owner(
  df: Dockerfile,
  ins: Instruction,
  tree: Tree,
  spec: string,
): Promise<{ uid: number; gid?: number }> {
  const [u, g] = spec.split(":");
  const num = async (v: string, file: "etc/passwd" | "etc/group", what: string) => {
    if (/^[0-9]+$/.test(v)) return Number(v);
    const n = await tree.lookup(file, v);
    if (n === undefined)
      throw at(
        df,
        ins,
        `${what} "${v}" is not in the stage's /${file}`,
        "Use a numeric id, or a name the stage defines.",
      );
    return n;
  };
  const uid = await num(u ?? "", "etc/passwd", "user");
  if (g === undefined || g === "") {
    // A user name alone: BuildKit takes the user's primary group for --chown, the same id for a number.
    return { uid, gid: /^[0-9]+$/.test(u!) ? uid : await primaryGroup(tree, u!) };
  }
  return { uid, gid: await num(g, "etc/group", "group") };
}

async function primaryGroup(tree: Tree, user: string): Promise<number | undefined> {
  const gid = (await tree.account("etc/passwd", user))?.[3];
  return gid !== undefined && /^[0-9]+$/.test(gid) ? Number(gid) : undefined;
}

/** The layer for a set of changed keys: each with its parents, in their current state. */
function entriesFor(tree: Tree, changed: Iterable<string>): LayerEntry[] {
  const out = new Map<string, LayerEntry>();
  for (const key of changed) {
    for (const p of tree.parentEntries(key)) if (!out.has(p.path)) out.set(p.path, p);
    const e = tree.entry(key);
    out.set(key, e);
    if (e.type === "dir" && tree.get(key)) for (const d of tree.descendants(key)) out.set(d, tree.entry(d));
  }
  return [...out.values()];
}

async function ensureDir(
  tree: Tree,
  key: string,
  changed: Set<string>,
  meta = { mode: 0o755, uid: 0, gid: 0 },
): Promise<void> {
  const parts = key.split("/").filter(Boolean);
  let cur = "";
  for (const part of parts) {
    cur = tree.resolve(cur ? `${cur}/${part}` : part);
    const n = tree.get(cur);
    if (n?.type === "dir") continue;
    if (n)
      throw new PolyarchError({
        code: "E_INPUT",
        message: `/${cur} exists and is not a directory`,
        hint: "Check the destination path.",
      });
    tree.set(cur, { type: "dir", ...meta });
    changed.add(cur);
  }
}

/** A copied node with its source's extended attributes, if it has any. */
function withXattrs(node: Node, from: Node): Node {
  if (from.xattrs) node.xattrs = from.xattrs;
  return node;
}

/** COPY / ADD of sources from a file system into the tree; returns the keys it changed. */
async function copyInto(
  tree: Tree,
  from: SourceFs,
  sources: string[],
  dest: string,
  opts: {
    own?: { uid: number; gid?: number };
    chmod?: number;
    exclude: RegExp[];
    what: string;
    /** COPY --parents: each source keeps its path (from a `/./` in it on) under the destination. */
    parents?: boolean;
  },
): Promise<Set<string>> {
  const changed = new Set<string>();
  for (const s of sources)
    if (path.posix.normalize(s.replace(/^\/+/, "")).startsWith("../") || path.posix.normalize(s) === "..")
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${opts.what}: ${s} is outside the ${from instanceof ContextFs ? "build context" : "source stage"}`,
        hint: "Sources are relative to the context; move the file into it or choose a larger context.",
      });
  const wildcard = sources.some((s) => /[*?[]/.test(s));
  const matches: string[] = [];
  /** Per match, with --parents: the source directory its kept path starts from. */
  const pivots = new Map<string, string>();
  for (const s of sources) {
    const found = (await expandSource(from, s)).filter((m) => !opts.exclude.some((re) => re.test(m)));
    if (opts.parents) {
      const raw = s.replace(/^\/+/, "").replace(/^(\.\/)+/, "");
      const at = raw.indexOf("/./");
      const pivot = at >= 0 ? treeKey(raw.slice(0, at)) : "";
      for (const m of found) pivots.set(m, pivot);
    }
    if (!found.length && !wildcard)
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${opts.what}: ${s} not found${from instanceof ContextFs ? " in the build context (or excluded by .dockerignore)" : ""}`,
        hint: "Check the source path; it is relative to the context (or to the stage root with --from).",
      });
    matches.push(...found);
  }
  if (!matches.length)
    throw new PolyarchError({
      code: "E_INPUT",
      message: `${opts.what}: no source files match ${sources.join(" ")}`,
      hint: "Check the patterns.",
    });
  const destIsDir = dest.endsWith("/") || matches.length > 1 || wildcard;
  const destKey = treeKey(dest);
  // Files from the context become root's; from a stage or an image they keep their owners and
  // extended attributes (file capabilities, say), as in BuildKit and buildah. --chown overrides.
  const fromContext = from instanceof ContextFs;
  // Nodes are written as literals, without spreads: this runs per file (see tarStream).
  const put = async (key: string, n: Node) => {
    const parent = path.posix.dirname(key);
    if (parent !== ".") await ensureDir(tree, parent, changed);
    const real = path.posix.join(tree.resolve(parent === "." ? "" : parent), path.posix.basename(key));
    const mode = opts.chmod ?? n.mode;
    const uid = opts.own?.uid ?? (fromContext ? 0 : n.uid);
    const gid = opts.own?.gid ?? opts.own?.uid ?? (fromContext ? 0 : n.gid);
    if (n.type === "dir") {
      const existing = tree.get(real);
      if (existing?.type !== "dir") tree.set(real, withXattrs({ type: "dir", mode, uid, gid }, n));
      else if (opts.own || opts.chmod !== undefined)
        tree.set(real, withXattrs({ ...existing, mode, uid, gid }, n));
    } else if (n.type === "symlink") {
      tree.set(real, { type: "symlink", mode: 0o777, uid, gid, target: n.target! });
    } else {
      tree.set(real, withXattrs({ type: "file", mode, uid, gid, source: n.source! }, n));
    }
    changed.add(real);
  };
  const copyDir = async (srcKey: string, to: string) => {
    for (const name of await from.list(srcKey)) {
      const child = srcKey ? `${srcKey}/${name}` : name;
      if (opts.exclude.some((re) => re.test(child))) continue;
      const n = await from.stat(child);
      if (!n) continue;
      const target = to ? `${to}/${name}` : name;
      await put(target, n);
      if (n.type === "dir") await copyDir(child, target);
    }
  };
  if (opts.parents) {
    // Each match goes to dest/<its path after the pivot>, with the directories on the way
    // copied from the source (their modes and, from a stage, owners), as BuildKit copies them.
    if (destKey !== "") await ensureDir(tree, destKey, changed);
    for (const m of matches) {
      const pivot = pivots.get(m) ?? "";
      const rel = pivot ? m.slice(pivot.length + 1) : m;
      const parts = rel.split("/");
      for (let j = 1; j < parts.length; j++) {
        const dir = parts.slice(0, j).join("/");
        const srcDir = await from.stat(pivot ? `${pivot}/${dir}` : dir);
        if (srcDir) await put(destKey ? `${destKey}/${dir}` : dir, srcDir);
      }
      const n = (await from.stat(m))!;
      const target = destKey ? `${destKey}/${rel}` : rel;
      await put(target, n);
      if (n.type === "dir") await copyDir(m, target);
    }
    return changed;
  }
  for (const m of matches) {
    const n = (await from.stat(m))!;
    if (n.type === "dir") {
      // The directory a directory's contents go into is made as root's (unless --chown).
      if (destKey !== "") await put(destKey, { ...n, mode: opts.chmod ?? n.mode, uid: 0, gid: 0 });
      await copyDir(m, destKey);
      continue;
    }
    const existing = tree.get(tree.resolve(destKey));
    const into = destIsDir || existing?.type === "dir";
    if (into && destKey !== "") await ensureDir(tree, destKey, changed);
    await put(
      into ? (destKey ? `${destKey}/${path.posix.basename(m)}` : path.posix.basename(m)) : destKey,
      n,
    );
  }
  return changed;
}

/** What ADD does with a local file: a tar or gzip tar is extracted; other compressed files need a builder. */
async function archiveKind(file: string): Promise<"tar" | "tar.gz" | "other" | undefined> {
  const { open } = await import("node:fs/promises");
  const fh = await open(file, "r");
  const head = Buffer.alloc(512);
  let n: number;
  try {
    n = (await fh.read(head, 0, 512, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const isTar = (b: Buffer) => b.length >= 262 && b.subarray(257, 262).toString("latin1") === "ustar";
  if (isTar(head.subarray(0, n))) return "tar";
  if (n >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    // A gzip file is unpacked only when it holds a tar (BuildKit copies any other as it is).
    const { createGunzip } = await import("node:zlib");
    const { createReadStream } = await import("node:fs");
    const first = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const gz = createReadStream(file).pipe(createGunzip());
      gz.on("data", (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= 512) {
          gz.destroy();
          resolve(Buffer.concat(chunks));
        }
      });
      gz.on("error", () => resolve(Buffer.concat(chunks)));
      gz.on("end", () => resolve(Buffer.concat(chunks)));
      gz.on("close", () => resolve(Buffer.concat(chunks)));
    });
    return isTar(first) ? "tar.gz" : undefined;
  }
  const magic = head.subarray(0, 6);
  if (
    magic.subarray(0, 3).toString("latin1") === "BZh" ||
    magic.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ||
    magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))
  )
    return "other";
  return undefined;
}

/** Who a RUN runs as: USER resolved through the stage's /etc/passwd and /etc/group. */
export interface Actor {
  uid: number;
  gid: number;
  groups: Set<number>;
}

const ROOT: Actor = { uid: 0, gid: 0, groups: new Set() };

/** The actor of a RUN under `USER spec`, as runc sets it up (primary group, supplementary groups). */
async function actorOf(df: Dockerfile, ins: Instruction, tree: Tree, spec: string): Promise<Actor> {
  if (spec === "" || spec === "root" || spec === "0" || spec === "0:0") return ROOT;
  const [u, g] = spec.split(":") as [string, string | undefined];
  const pw = /^[0-9]+$/.test(u)
    ? undefined
    : await tree.account("etc/passwd", u).then((f) => {
        if (!f)
          throw at(
            df,
            ins,
            `USER ${u} is not in the stage's /etc/passwd`,
            "Use a numeric id, or a user the stage defines.",
          );
        return f;
      });
  const uid = pw ? Number(pw[2]) : Number(u);
  const numericPw = pw ?? (await passwdById(tree, uid));
  let gid = numericPw && /^[0-9]+$/.test(numericPw[3] ?? "") ? Number(numericPw[3]) : 0;
  if (g !== undefined && g !== "") {
    const n = /^[0-9]+$/.test(g) ? Number(g) : await tree.lookup("etc/group", g);
    if (n === undefined)
      throw at(
        df,
        ins,
        `USER ${spec}: group ${g} is not in the stage's /etc/group`,
        "Use a numeric id, or a group the stage defines.",
      );
    gid = n;
  }
  const name = numericPw?.[0];
  const groups = new Set<number>();
  if (name && (g === undefined || g === "")) for (const id of await tree.memberships(name)) groups.add(id);
  return { uid, gid, groups };
}

async function passwdById(tree: Tree, uid: number): Promise<string[] | undefined> {
  return tree.accountBy("etc/passwd", (f) => f[2] === String(uid));
}

/** Whether the actor has permission `bit` (4 read, 2 write, 1 search/execute) on a node. */
function may(n: Node, a: Actor, bit: number): boolean {
  if (a.uid === 0) return true;
  if (n.uid === a.uid) return ((n.mode >> 6) & bit) !== 0;
  if (n.gid === a.gid || a.groups.has(n.gid)) return ((n.mode >> 3) & bit) !== 0;
  return (n.mode & bit) !== 0;
}

/** Whether the actor may create or remove entries in a directory (search on every ancestor, write on it). */
function mayChange(tree: Tree, dirKey: string, a: Actor): boolean {
  if (a.uid === 0) return true;
  const parts = dirKey === "" ? [] : dirKey.split("/");
  for (let i = 0; i <= parts.length; i++) {
    const n = tree.get(parts.slice(0, i).join("/"));
    if (!n || !may(n, a, 1)) return false;
  }
  return may(tree.get(dirKey)!, a, 2);
}

/** The owner of an entry created in `parentKey`: the actor, with a set-group-ID directory's group. */
function created(tree: Tree, parent: string, a: Actor): { uid: number; gid: number; setgid: boolean } {
  const p = tree.get(parent);
  const setgid = p?.type === "dir" && (p.mode & 0o2000) !== 0;
  return { uid: a.uid, gid: setgid ? p.gid : a.gid, setgid };
}

/** File capabilities as the security.capability xattr (VFS_CAP_REVISION_2, little-endian), base64. */
function capabilityXattr(c: FileCaps): string {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000000 | (c.effective ? 1 : 0), 0);
  b.writeUInt32LE(Number(c.permitted & 0xffffffffn), 4);
  b.writeUInt32LE(Number(c.inheritable & 0xffffffffn), 8);
  b.writeUInt32LE(Number(c.permitted >> 32n), 12);
  b.writeUInt32LE(Number(c.inheritable >> 32n), 16);
  return b.toString("base64");
}

const CAPABILITY = "security.capability";

/** A node without its file capabilities (chown drops them, as the kernel does). */
function withoutCaps(n: Node): Node {
  if (!n.xattrs || !(CAPABILITY in n.xattrs)) return n;
  const { [CAPABILITY]: _, ...rest } = n.xattrs;
  const { xattrs: __, ...bare } = n;
  return Object.keys(rest).length ? { ...bare, xattrs: rest } : bare;
}

/**
 * Applies the file operations of a trivial RUN to the tree, failing as the command would. An
 * operation that fails inside a `;` list (where the shell goes on), or that meets a permission
 * check under a non-root USER, leaves the RUN to the builder: its outcome is then the real one.
 */
async function runOps(
  df: Dockerfile,
  ins: Instruction,
  tree: Tree,
  ops: FsOp[],
  workdir: string,
  actor: Actor,
): Promise<Set<string>> {
  const changed = new Set<string>();
  const abs = (p: string) => treeKey(path.posix.resolve(workdir, p));
  let current = 0;
  const fail = (msg: string) =>
    ops.slice(current).some((o) => o.then === ";")
      ? new NeedsBuilder(ins, `${msg}, inside a ";" list the shell goes on after`)
      : at(df, ins, `RUN would fail: ${msg}`, "Fix the command; a real shell would stop here too.");
  const denied = (what: string) =>
    new NeedsBuilder(
      ins,
      `${what} as a non-root USER meets a permission check polyarch leaves to the builder`,
    );
  const dirOf = (key: string) => tree.resolve(parentKey(key));
  for (const [i, op] of ops.entries()) {
    current = i;
    if (actor.uid !== 0 && (op.op === "chown" || op.op === "setcap")) throw denied(op.op);
    switch (op.op) {
      case "true":
        break;
      case "mkdir":
        for (const p of op.paths) {
          const key = abs(p);
          // mkdir -p makes each missing parent the same way, as the actor.
          const parts = key.split("/");
          for (let j = op.parents ? 1 : parts.length; j <= parts.length; j++) {
            const k = parts.slice(0, j).join("/");
            const real = path.posix.join(dirOf(k), path.posix.basename(k));
            const n = tree.get(tree.resolve(k));
            if (n) {
              if (op.parents && n.type === "dir") continue;
              if (op.parents && j < parts.length)
                throw fail(`mkdir: cannot create directory '${p}': Not a directory`);
              throw fail(`mkdir: cannot create directory '${p}': File exists`);
            }
            const parent = tree.resolve(parentKey(real));
            if (tree.get(parent)?.type !== "dir")
              throw fail(`mkdir: cannot create directory '${p}': No such file or directory`);
            if (!mayChange(tree, parent, actor)) throw denied("mkdir");
            const own = created(tree, parent, actor);
            const last = j === parts.length;
            // -m applies to the named directory only; parents get 0777 less the umask (022).
            const mode = ((last ? op.mode : undefined) ?? 0o755) | (own.setgid ? 0o2000 : 0);
            tree.set(real, { type: "dir", mode, uid: own.uid, gid: own.gid });
            changed.add(real);
          }
        }
        break;
      case "chmod":
      case "chown": {
        // chown USER keeps each file's group; USER: takes the user's login group (coreutils, busybox).
        const own =
          op.op === "chown"
            ? op.owner.includes(":")
              ? await owner(df, ins, tree, op.owner)
              : { uid: (await owner(df, ins, tree, op.owner)).uid }
            : undefined;
        for (const p of op.paths) {
          const key = tree.resolve(abs(p));
          const n = tree.get(key);
          if (!n) throw fail(`${op.op}: cannot access '${p}': No such file or directory`);
          const keys = [key, ...(op.recursive && n.type === "dir" ? tree.descendants(key) : [])];
          for (const k of keys) {
            const m = tree.get(k)!;
            if (op.op === "chmod" && m.type !== "symlink") {
              if (actor.uid !== 0 && (m.uid !== actor.uid || (op.mode & 0o6000) !== 0)) throw denied("chmod");
              tree.set(k, { ...m, mode: op.mode });
            }
            if (own) {
              // The kernel drops set-user-ID, set-group-ID (when group-executable) and file
              // capabilities of a non-directory whose owner changes, even for root.
              const kill = m.type === "file" ? 0o4000 | (m.mode & 0o010 ? 0o2000 : 0) : 0;
              tree.set(k, {
                ...(m.type === "file" ? withoutCaps(m) : m),
                mode: m.mode & ~kill,
                uid: own.uid,
                gid: own.gid ?? m.gid,
              });
            }
            changed.add(k);
          }
        }
        break;
      }
      case "symlink": {
        let key = abs(op.link);
        const existing = tree.get(tree.resolve(key));
        if (existing?.type === "dir")
          key = path.posix.join(tree.resolve(key), path.posix.basename(op.target));
        const real = path.posix.join(dirOf(key), path.posix.basename(key));
        if (tree.get(real) && !op.force)
          throw fail(`ln: failed to create symbolic link '${op.link}': File exists`);
        if (tree.get(tree.resolve(parentKey(real)))?.type !== "dir" && path.posix.dirname(real) !== ".")
          throw fail(`ln: failed to create symbolic link '${op.link}': No such file or directory`);
        if (!mayChange(tree, tree.resolve(parentKey(real)), actor)) throw denied("ln -s");
        const own = created(tree, tree.resolve(parentKey(real)), actor);
        tree.set(real, { type: "symlink", mode: 0o777, uid: own.uid, gid: own.gid, target: op.target });
        changed.add(real);
        break;
      }
      case "touch":
        for (const p of op.paths) {
          const key = tree.resolve(abs(p));
          if (!tree.get(key)) {
            if (tree.get(tree.resolve(parentKey(key)))?.type !== "dir")
              throw fail(`touch: cannot touch '${p}': No such file or directory`);
            if (!mayChange(tree, tree.resolve(parentKey(key)), actor)) throw denied("touch");
            const own = created(tree, tree.resolve(parentKey(key)), actor);
            tree.set(key, {
              type: "file",
              mode: 0o644,
              uid: own.uid,
              gid: own.gid,
              source: { data: new Uint8Array() },
            });
          } else if (actor.uid !== 0 && !may(tree.get(key)!, actor, 2)) throw denied("touch");
          changed.add(key);
        }
        break;
      case "rm":
        for (const p of op.paths) {
          const key = abs(p);
          const real = path.posix.join(dirOf(key), path.posix.basename(key));
          const n = tree.get(real);
          if (!n) {
            if (op.force) continue;
            throw fail(`rm: cannot remove '${p}': No such file or directory`);
          }
          if (n.type === "dir" && !op.recursive) throw fail(`rm: cannot remove '${p}': Is a directory`);
          if (actor.uid !== 0) {
            const parent = tree.get(parentKey(real))!;
            const sticky = (parent.mode & 0o1000) !== 0 && parent.uid !== actor.uid && n.uid !== actor.uid;
            const inside =
              n.type === "dir"
                ? [real, ...tree.descendants(real)].filter((k) => tree.get(k)?.type === "dir")
                : [];
            if (
              sticky ||
              !mayChange(tree, parentKey(real), actor) ||
              inside.some((k) => ![4, 2, 1].every((bit) => may(tree.get(k)!, actor, bit)))
            )
              throw denied("rm");
          }
          for (const d of tree.descendants(real)) changed.delete(d);
          tree.remove(real);
          changed.add(real);
        }
        break;
      case "setcap":
        for (const f of op.files) {
          const key = tree.resolve(abs(f.path));
          const n = tree.get(key);
          if (!n)
            throw fail(`setcap: Failed to set capabilities on file '${f.path}' (No such file or directory)`);
          if (n.type !== "file")
            throw fail(`setcap: Failed to set capabilities on file '${f.path}' (Invalid argument)`);
          const bare = withoutCaps(n);
          tree.set(
            key,
            f.caps
              ? { ...bare, xattrs: { ...(bare.xattrs ?? {}), [CAPABILITY]: capabilityXattr(f.caps) } }
              : bare,
          );
          changed.add(key);
        }
        break;
    }
  }
  return changed;
}

/** Whether a command is an executable file of the tree: a path, or a name found through PATH. */
function findCommand(tree: Tree, cmd: string, pathVar: string, workdir: string): boolean {
  const dirs = cmd.includes("/")
    ? [path.posix.resolve(workdir, path.posix.dirname(cmd))]
    : pathVar.split(":").filter(Boolean);
  return dirs.some((d) => {
    const n = tree.get(tree.resolve(path.posix.join(d, path.posix.basename(cmd))));
    return n?.type === "file" && (n.mode & 0o111) !== 0;
  });
}

/** Runs one stage's steps natively; throws NeedsBuilder at the first step that needs a process. */
export async function runStage(stage: StagePlan, state: StageState, deps: NativeDeps): Promise<StageState> {
  const { df } = deps;
  const lex = df.lexer;
  for (const step of stage.steps) {
    try {
      await runStep(step, state, deps, lex);
    } catch (e) {
      // Every failure names the Dockerfile line it comes from.
      if (e instanceof PolyarchError && !e.message.startsWith(`${df.file}:`))
        throw e.withContext(`${df.file}:${step.instruction.line}: ${step.instruction.keyword}`);
      throw e;
    }
  }
  return state;
}

async function runStep(
  step: StepPlan,
  st: StageState,
  deps: NativeDeps,
  lex: Dockerfile["lexer"],
): Promise<void> {
  const { df } = deps;
  const ins = step.instruction;
  const cfg = st.config;
  const word = (t: string) => processWord(t, st.vars(), lex);
  const note = (emptyLayer: boolean): void => {
    st.history.push({
      created_by: `${ins.original} # polyarch`,
      ...(emptyLayer ? { empty_layer: true } : {}),
    });
  };
  const layer = async (changed: Set<string>): Promise<void> => {
    if (changed.size === 0) return note(true);
    const tree = await st.tree();
    const entries = entriesFor(tree, changed);
    const lossy = entries.find(
      (e) =>
        e.type !== "whiteout" && e.type !== "symlink" && Object.values(e.xattrs ?? {}).includes(LOSSY_XATTR),
    );
    if (lossy)
      throw new NeedsBuilder(
        ins,
        `/${lossy.path} has an extended attribute polyarch cannot read byte for byte`,
      );
    if (deps.layers) {
      const made = deps.cache.layer(entries, deps.tarOpts, `${ins.original} # polyarch`, deps.pool);
      st.addLayer(made);
      const onLayer = deps.onLayer;
      if (onLayer) made.then(onLayer, () => {}); // a failure is surfaced by StageState.settle()
    }
    note(false);
  };
  switch (ins.keyword) {
    case "ARG":
      for (const [k, v] of step.args ?? []) st.args.set(k, v);
      return note(true);
    case "ENV": {
      const kv = keyValues(ins.args, st.vars(), lex, `${df.file}:${ins.line}: ENV`);
      if (kv.length && kv[0]!.value === undefined) {
        // Legacy form: ENV key value with spaces.
        const [k, ...rest] = ins.args.split(/\s+/);
        setEnv(cfg, k!, word(rest.join(" ")));
      } else for (const { key, value } of kv) setEnv(cfg, key, value ?? "");
      return note(true);
    }
    case "LABEL": {
      const labels = { ...(cfg.Labels ?? {}) };
      for (const { key, value } of keyValues(ins.args, st.vars(), lex, `${df.file}:${ins.line}: LABEL`)) {
        if (value === undefined) throw at(df, ins, `LABEL ${key} has no value`, "Write labels as key=value.");
        labels[key] = value;
      }
      cfg.Labels = labels;
      return note(true);
    }
    case "MAINTAINER":
      st.author = word(ins.args);
      return note(true);
    case "EXPOSE": {
      const ports = { ...(cfg.ExposedPorts ?? {}) };
      for (const p of processWords(ins.args, st.vars(), lex)) {
        const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
        if (!m) throw at(df, ins, `EXPOSE: "${p}" is not a port`, "Write ports as 80, 8080/tcp or 53/udp.");
        const proto = (m[3] ?? "tcp").toLowerCase();
        const from = Number(m[1]);
        const to = Number(m[2] ?? m[1]);
        for (let n = from; n <= to; n++) ports[`${n}/${proto}`] = {};
      }
      cfg.ExposedPorts = ports;
      return note(true);
    }
    case "USER":
      cfg.User = word(ins.args);
      return note(true);
    case "STOPSIGNAL":
      cfg.StopSignal = word(ins.args);
      return note(true);
    case "VOLUME": {
      const vols = { ...(cfg.Volumes ?? {}) };
      for (const v of ins.json ?? processWords(ins.args, st.vars(), lex)) vols[word(v)] = {};
      cfg.Volumes = vols;
      return note(true);
    }
    case "SHELL":
      if (!ins.json) throw at(df, ins, "SHELL needs the JSON form", 'Write SHELL ["/bin/sh", "-c"].');
      cfg.Shell = ins.json;
      return note(true);
    case "CMD":
      cfg.Cmd = execForm(ins, cfg);
      st.cmdSet = true;
      return note(true);
    case "ENTRYPOINT":
      cfg.Entrypoint = execForm(ins, cfg);
      // A new entrypoint makes an inherited CMD meaningless (BuildKit resets it).
      if (!st.cmdSet) delete cfg.Cmd;
      return note(true);
    case "ONBUILD":
      cfg.OnBuild = [...(cfg.OnBuild ?? []), ins.args];
      return note(true);
    case "HEALTHCHECK": {
      const words = ins.args.split(/\s+/);
      if (words[0]?.toUpperCase() === "NONE") cfg.Healthcheck = { Test: ["NONE"] };
      else {
        if (words[0]?.toUpperCase() !== "CMD") throw at(df, ins, "HEALTHCHECK needs CMD or NONE");
        const rest = ins.args.replace(/^\S+\s*/, "");
        const json = rest.trim().startsWith("[") ? (JSON.parse(rest) as string[]) : undefined;
        const hc: NonNullable<Config["Healthcheck"]> = {
          Test: json ? ["CMD", ...json] : ["CMD-SHELL", rest],
        };
        const f = (n: string) => ins.flags.get(n)?.[0];
        if (f("interval")) hc.Interval = duration(df, ins, f("interval")!);
        if (f("timeout")) hc.Timeout = duration(df, ins, f("timeout")!);
        if (f("start-period")) hc.StartPeriod = duration(df, ins, f("start-period")!);
        if (f("start-interval")) hc.StartInterval = duration(df, ins, f("start-interval")!);
        if (f("retries")) hc.Retries = Number(f("retries"));
        cfg.Healthcheck = hc;
      }
      return note(true);
    }
    case "WORKDIR": {
      const dir = path.posix.resolve(st.workdir(), word(ins.args));
      cfg.WorkingDir = dir;
      const tree = await st.tree();
      const changed = new Set<string>();
      if (tree.get(tree.resolve(treeKey(dir)))?.type !== "dir") await ensureDir(tree, treeKey(dir), changed);
      return layer(changed);
    }
    case "COPY":
    case "ADD": {
      const tree = await st.tree();
      const what = `${df.file}:${ins.line}: ${ins.keyword}`;
      for (const f of ["keep-git-dir", "unpack"])
        if (ins.flags.has(f)) throw new NeedsBuilder(ins, `${ins.keyword} --${f}`);
      const parentsFlag = ins.flags.get("parents")?.[0];
      if (parentsFlag !== undefined && !["", "true", "false"].includes(parentsFlag))
        throw at(df, ins, `--parents=${parentsFlag} is not true or false`);
      const parents = parentsFlag === "" || parentsFlag === "true";
      if (parents && ins.keyword === "ADD") throw new NeedsBuilder(ins, "ADD --parents");
      const chmodText = ins.flags.get("chmod")?.[0];
      const chmod =
        chmodText === undefined
          ? undefined
          : /^[0-7]{3,4}$/.test(chmodText)
            ? Number.parseInt(chmodText, 8)
            : undefined;
      if (chmodText !== undefined && chmod === undefined)
        throw at(df, ins, `--chmod=${chmodText} is not an octal mode`);
      const chownText = ins.flags.get("chown")?.[0];
      const own = chownText ? await owner(df, ins, tree, word(chownText)) : undefined;
      const exclude = (ins.flags.get("exclude") ?? []).map((e) => patternRegex(treeKey(word(e))));
      if (ins.heredocs.length) {
        // COPY <<EOF /path: each heredoc becomes a file (0644 unless --chmod).
        const dest = path.posix.resolve(
          st.workdir(),
          word(ins.args.replace(/<<-?["']?\w+["']?/g, "").trim()),
        );
        const changed = new Set<string>();
        for (const h of ins.heredocs) {
          const content = h.expand ? expandHeredoc(h.content, st.vars(), lex) : h.content;
          const key =
            ins.heredocs.length > 1 || dest.endsWith("/") ? `${treeKey(dest)}/${h.name}` : treeKey(dest);
          const parent = path.posix.dirname(key);
          if (parent !== ".") await ensureDir(tree, parent, changed);
          tree.set(key, {
            type: "file",
            mode: chmod ?? 0o644,
            uid: own?.uid ?? 0,
            gid: own?.gid ?? own?.uid ?? 0,
            source: { data: Buffer.from(content) },
          });
          changed.add(key);
        }
        return layer(changed);
      }
      const words = ins.json ?? processWords(ins.args, st.vars(), lex);
      if (words.length < 2) throw at(df, ins, `${ins.keyword} needs a source and a destination`);
      const sources = words.slice(0, -1).map((w) => (ins.json ? word(w) : w));
      const rawDest = ins.json ? word(words.at(-1)!) : words.at(-1)!;
      const dest = rawDest.endsWith("/")
        ? `${path.posix.resolve(st.workdir(), rawDest)}/`
        : path.posix.resolve(st.workdir(), rawDest);
      const checksumText = ins.flags.get("checksum")?.[0];
      if (ins.keyword === "ADD") {
        const urls = sources.filter(isHttpSource);
        if (
          sources.some(
            (s) =>
              (!isHttpSource(s) && /^[a-z]+:\/\//i.test(s)) || s.startsWith("git@") || /\.git(#|$)/.test(s),
          )
        )
          throw new NeedsBuilder(ins, "ADD of a git repository");
        if (checksumText !== undefined && (urls.length !== 1 || sources.length !== 1))
          throw at(
            df,
            ins,
            "ADD --checksum needs exactly one http(s) source",
            "Give one URL, or leave --checksum out.",
          );
        if (urls.length && urls.length !== sources.length)
          throw new NeedsBuilder(ins, "ADD of URLs and local files in one instruction");
        if (urls.length) {
          // Downloaded as BuildKit's HTTP source does: named after the URL, mode 0600, not unpacked.
          const checksum = checksumText === undefined ? undefined : parseChecksum(word(checksumText));
          if (checksumText !== undefined && !checksum)
            throw at(
              df,
              ins,
              `--checksum=${checksumText} is not a sha256, sha384 or sha512 digest`,
              "Write --checksum=sha256:<64 hex digits>.",
            );
          const files = new Map<string, string>();
          for (const u of urls) {
            const file = path.join(st.spoolDir, String(st.spoolSeq.n++));
            await download(u, file, {
              what,
              ...(checksum ? { checksum } : {}),
              ...(deps.signal ? { signal: deps.signal } : {}),
            });
            files.set(urlFilename(u), file);
          }
          return layer(
            await copyInto(tree, new DownloadFs(files), [...files.keys()], dest, {
              ...(own ? { own } : {}),
              ...(chmod !== undefined ? { chmod } : {}),
              exclude,
              what,
            }),
          );
        }
      }
      if (checksumText !== undefined) throw at(df, ins, "--checksum is only for ADD of an http(s) URL");
      const fromName = ins.flags.get("from")?.[0];
      let from: SourceFs = deps.context;
      if (fromName !== undefined) {
        const idx = df.stages.findIndex((s) => s.name === word(fromName).toLowerCase());
        const i = idx >= 0 ? idx : /^[0-9]+$/.test(fromName) ? Number(fromName) : -1;
        const other = deps.stages.get(i);
        if (other) from = new TreeFs(await other.tree());
        else if (i >= 0)
          throw at(df, ins, `COPY --from=${fromName}: that stage is not built before this one`);
        // Not a stage: an image, for this stage's platform (BuildKit reads it the same way).
        else {
          try {
            from = new TreeFs(await deps.imageTree(word(fromName), st.platform));
          } catch (err) {
            throw addContext(
              err,
              `--from=${fromName} is no stage of ${df.file}, and as an image it cannot be read`,
            );
          }
        }
      }
      // ADD extracts local tar archives (plain or gzip) into the destination directory.
      const archives: { file: string; gz: boolean }[] = [];
      let plain = sources;
      if (ins.keyword === "ADD" && from === deps.context) {
        plain = [];
        for (const src of sources) {
          const matches = await expandSource(from, src);
          const kinds = await Promise.all(
            matches
              .map(async (m) => ({ m, node: await from.stat(m) }))
              .map(async (x) => {
                const { m, node } = await x;
                const file =
                  node?.type === "file" && node.source && "file" in node.source
                    ? node.source.file
                    : undefined;
                return { m, file, kind: file ? await archiveKind(file) : undefined };
              }),
          );
          for (const k of kinds) {
            if (k.kind === "other")
              throw new NeedsBuilder(ins, `ADD of a compressed archive polyarch does not unpack (${k.m})`);
            if (k.kind && k.file) archives.push({ file: k.file, gz: k.kind === "tar.gz" });
          }
          if (kinds.some((k) => !k.kind) || matches.length === 0) plain.push(src);
        }
      }
      const changed = plain.length
        ? await copyInto(
            tree,
            from,
            plain,
            archives.length && !dest.endsWith("/") && plain.length ? `${dest}/` : dest,
            {
              ...(own ? { own } : {}),
              ...(chmod !== undefined ? { chmod } : {}),
              exclude,
              what,
              ...(parents ? { parents } : {}),
            },
          )
        : new Set<string>();
      for (const a of archives) {
        const destKey = treeKey(dest);
        if (destKey !== "") await ensureDir(tree, destKey, changed);
        const { createReadStream } = await import("node:fs");
        const keys = await tree.applyTar(createReadStream(a.file), a.gz, st.spoolDir, st.spoolSeq, {
          prefix: tree.resolve(destKey),
          ...(own ? { own: { uid: own.uid, gid: own.gid ?? own.uid } } : {}),
        });
        for (const k of keys) changed.add(k);
      }
      return layer(changed);
    }
    case "RUN": {
      if (step.mode !== "native" || !step.ops) throw new NeedsBuilder(ins, step.why);
      const tree = await st.tree();
      const shell = cfg.Shell ?? ["/bin/sh", "-c"];
      if (!ins.json) {
        if (!posixShell(shell)) throw new NeedsBuilder(ins, `RUN under SHELL ${JSON.stringify(shell)}`);
        if (!findCommand(tree, shell[0]!, "", st.workdir()))
          throw at(
            df,
            ins,
            `RUN would fail: the image has no ${shell[0]} to run it`,
            "Use a base with a shell, or the JSON form of RUN.",
          );
      }
      const pathVar = st.vars().get("PATH") ?? DEFAULT_PATH.slice("PATH=".length);
      for (const [i, op] of step.ops.entries()) {
        // The JSON form runs its first word with no shell, so even `true` must be a program there.
        const cmd = op.cmd ?? (ins.json ? ins.json[0] : undefined);
        if (cmd && !findCommand(tree, cmd, pathVar, st.workdir()))
          // Inside a ";" list the shell goes on after "not found": the builder gives the real outcome.
          throw step.ops.slice(i).some((o) => o.then === ";")
            ? new NeedsBuilder(ins, `${cmd} is not in the image, inside a ";" list`)
            : at(
                df,
                ins,
                `RUN would fail: ${cmd}: not found in the image (PATH=${pathVar})`,
                "Use a base that has the command, or leave it out.",
              );
      }
      const actor = await actorOf(df, ins, tree, cfg.User ?? "");
      return layer(await runOps(df, ins, tree, step.ops, st.workdir(), actor));
    }
    case "FROM":
      return;
  }
}
