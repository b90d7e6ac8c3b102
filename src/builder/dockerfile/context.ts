/**
 * Where COPY and ADD take files from: the build context directory (minus what
 * `.dockerignore` — or `<Dockerfile>.dockerignore` beside the Dockerfile — excludes) or
 * another stage's tree. Both answer the same three questions, so one copy routine serves
 * both. Patterns follow moby/patternmatcher: `*` and `?` within a path component, `**` across
 * them, `!` re-includes, the last matching line wins, and a pattern matching a directory
 * excludes what is under it.
 */
import { createHash } from "node:crypto";
import { type BigIntStats, lstatSync, readdirSync, readlinkSync, type Stats } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Node, Tree } from "./tree.js";
import { treeKey } from "./tree.js";

export interface SourceFs {
  /** What a path is, without following a final symlink; undefined when absent or excluded. */
  stat(rel: string): Promise<Node | undefined>;
  /** Names in a directory (excluded ones left out), sorted. */
  list(rel: string): Promise<string[]>;
}

/** A glob of one path component or, with `**`, of several, as an anchored regular expression. */
export function patternRegex(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else re += ".*";
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += `[${pattern
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else if (c === "\\" && i + 1 < pattern.length) re += `\\${pattern[++i]}`;
    else re += c.replace(/[.+^${}()|]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export class IgnoreRules {
  readonly #rules: { re: RegExp; negate: boolean }[];
  constructor(text: string) {
    this.#rules = [];
    for (const raw of text.split(/\r?\n/)) {
      let line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      const negate = line.startsWith("!");
      if (negate) line = line.slice(1).trim();
      const clean = path.posix.normalize(line.replace(/^\/+/, "")).replace(/\/+$/, "");
      if (clean === "" || clean === ".") continue;
      this.#rules.push({ re: patternRegex(clean), negate });
    }
  }
  /** True when the path (or one of its parents) is excluded by the last rule that matches. */
  excluded(rel: string): boolean {
    if (rel === "") return false;
    const parts = rel.split("/");
    let out = false;
    for (const r of this.#rules) {
      for (let n = 1; n <= parts.length; n++) {
        if (r.re.test(parts.slice(0, n).join("/"))) {
          out = !r.negate;
          break;
        }
      }
    }
    return out;
  }
}

/** The build context on disk. */
export class ContextFs implements SourceFs {
  readonly dir: string;
  readonly #ignore: IgnoreRules;
  private constructor(dir: string, ignore: IgnoreRules) {
    this.dir = dir;
    this.#ignore = ignore;
  }

  /** Opens a context; `<Dockerfile>.dockerignore` wins over the context's `.dockerignore`. */
  static async open(dir: string, dockerfile: string): Promise<ContextFs> {
    const read = (f: string) => readFile(f, "utf8").catch(() => undefined);
    const text =
      (await read(`${dockerfile}.dockerignore`)) ?? (await read(path.join(dir, ".dockerignore"))) ?? "";
    return new ContextFs(dir, new IgnoreRules(text));
  }

  // The context is walked with synchronous metadata calls: each is a few microseconds of
  // kernel work, while its promise form costs a thread-pool round trip and several objects —
  // over 16,000 files that was most of a COPY's time and a young generation grown to 32 MB.
  async stat(rel: string): Promise<Node | undefined> {
    const key = treeKey(rel);
    if (this.#ignore.excluded(key)) return undefined;
    const abs = path.join(this.dir, key);
    const st = lstatQuiet(abs);
    if (!st) return undefined;
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) return { type: "dir", mode, uid: 0, gid: 0 };
    if (st.isSymbolicLink()) return { type: "symlink", mode, uid: 0, gid: 0, target: readlinkSync(abs) };
    if (st.isFile()) return { type: "file", mode, uid: 0, gid: 0, source: { file: abs } };
    return undefined;
  }

  async list(rel: string): Promise<string[]> {
    return this.#list(treeKey(rel));
  }

  #list(key: string): string[] {
    let names: string[];
    try {
      names = readdirSync(path.join(this.dir, key));
    } catch {
      return [];
    }
    return names.filter((n) => !this.#ignore.excluded(key ? `${key}/${n}` : n)).sort();
  }

  #fingerprint: Promise<string> | undefined;

  /**
   * A key for the context as a builder would see it: every path not excluded, with its type,
   * mode, size, mtime, inode and link target (git's index trick: no file is read). Computed
   * once per build.
   */
  fingerprint(): Promise<string> {
    this.#fingerprint ??= (async () => {
      const h = createHash("sha256");
      const walk = (key: string): void => {
        for (const name of this.#list(key)) {
          const k = key ? `${key}/${name}` : name;
          const abs = path.join(this.dir, k);
          const st = lstatQuiet(abs, true);
          if (!st) continue;
          h.update(`${k}\0${st.mode}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0${st.ino}\0`);
          if (st.isSymbolicLink()) h.update(`${readlinkSync(abs)}\0`);
          else if (st.isDirectory()) walk(k);
        }
      };
      walk("");
      return h.digest("hex");
    })();
    return this.#fingerprint;
  }
}

/** lstat without following a final symlink; undefined when the path is gone (or unreadable). */
function lstatQuiet(abs: string): Stats | undefined;
function lstatQuiet(abs: string, bigint: true): BigIntStats | undefined;
function lstatQuiet(abs: string, bigint = false): Stats | BigIntStats | undefined {
  try {
    return lstatSync(abs, { bigint, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

/** Another stage's file system (COPY --from=<stage>). */
export class TreeFs implements SourceFs {
  readonly #tree: Tree;
  constructor(tree: Tree) {
    this.#tree = tree;
  }
  async stat(rel: string): Promise<Node | undefined> {
    const key = this.#tree.resolve(rel, false);
    return this.#tree.get(key);
  }
  async list(rel: string): Promise<string[]> {
    const key = this.#tree.resolve(rel);
    return this.#tree
      .children(key)
      .map((k) => k.slice(key === "" ? 0 : key.length + 1))
      .sort();
  }
}

/** Every path a COPY source names: itself, or with wildcards each match (sorted). */
export async function expandSource(fs: SourceFs, src: string): Promise<string[]> {
  const key = treeKey(src);
  if (!/[*?[]/.test(key)) return (await fs.stat(key)) ? [key] : [];
  const parts = key.split("/");
  let found = [""];
  for (const part of parts) {
    const next: string[] = [];
    const re = /[*?[]/.test(part) ? patternRegex(part) : undefined;
    for (const dir of found) {
      if (!re) {
        const k = dir ? `${dir}/${part}` : part;
        if (await fs.stat(k)) next.push(k);
        continue;
      }
      for (const name of await fs.list(dir)) if (re.test(name)) next.push(dir ? `${dir}/${name}` : name);
    }
    found = next;
  }
  return found.sort();
}
