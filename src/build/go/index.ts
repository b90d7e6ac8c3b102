/**
 * The Go builder: cross-compiles a main package once per platform with the host toolchain
 * (no emulation), puts each binary in its own reproducible layer, adds the package's static
 * files (`kodata/`, as ko does) as a shared layer, and assembles an image per platform and
 * an index over them.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, open, readFile, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { type Digest, digestHex, isDigest } from "../../digest/index.js";
import { PolyarchError } from "../../errors.js";
import {
  assembleImage,
  assembleIndex,
  type BaseImage,
  type FileLayer,
  isoTime,
} from "../../image/assemble.js";
import type { Image } from "../../image/index.js";
import { ENCODER_ID } from "../../layer/deflate.js";
import { markUsed, trimCache } from "./_cache.js";
import { diffIdOf, entriesFromDirectory, type LayerEntry, type TarOptions } from "../../layer/index.js";
import { LayerPool } from "../../layer/pool.js";
import { Annotation } from "../../manifest/index.js";
import { formatPlatform, type Platform, toGoEnv } from "../../platform/index.js";
import { exec as defaultExec, type Exec } from "../../util/exec.js";
import type { BuildEvent, Builder, BuildResult } from "../index.js";
import { Semaphore } from "../../util/limit.js";

/** Where the binary goes in the image; static files go to `${APP_DIR}/data`. */
export const APP_DIR = "/app";
export const DATA_DIR = `${APP_DIR}/data`;
/** The static-files directory of a package, named as ko names it so projects can move over. */
export const STATIC_DIR_NAME = "kodata";

/** Fully resolved options: nothing here has a hidden default. */
export interface GoBuildOptions {
  /** Directory go runs in (the module or a directory inside it), absolute. */
  dir: string;
  /** The main package, as `go build` takes it: "." or "./cmd/api". */
  mainPackage: string;
  platforms: Platform[];
  /** Seconds since the epoch for every timestamp (SOURCE_DATE_EPOCH). */
  sourceDateEpoch: number;
  /** The environment go runs with (PATH, HOME, GOCACHE, GOFLAGS …). */
  env: Record<string, string | undefined>;
  goBinary: string;
  cacheDir: string;
  jobs: number;
  ldflags?: string;
  buildTags?: string[];
  image: {
    user?: string;
    workingDir?: string;
    env: string[];
    exposedPorts: string[];
    labels: Record<string, string>;
    annotations: Record<string, string>;
    cmd?: string[];
    /** Replaces [/app/<binary>]. */
    entrypoint?: string[];
  };
  /** Shared compile slots when several builds run at once (defaults to `jobs` slots of its own). */
  limiter?: Semaphore;
  /** Base image per platform (formatPlatform key); scratch when absent. */
  base?: Map<string, BaseImage>;
  exec?: Exec;
}

/** Go variables that select a target; stripped from the inherited environment so only ours apply. */
const TARGET_VARS = [
  "GOOS",
  "GOARCH",
  "GOARM",
  "GOAMD64",
  "GOARM64",
  "GO386",
  "GOMIPS",
  "GOMIPS64",
  "GOPPC64",
  "GORISCV64",
  "GOWASM",
  "CGO_ENABLED",
];

interface GoPackage {
  name: string;
  importPath: string;
  dir: string;
}

export class GoBuilder implements Builder {
  readonly #o: GoBuildOptions;
  readonly #exec: Exec;
  constructor(opts: GoBuildOptions) {
    this.#o = opts;
    this.#exec = opts.exec ?? defaultExec;
  }

  #env(extra: Record<string, string>): Record<string, string | undefined> {
    const env = { ...this.#o.env };
    for (const k of TARGET_VARS) delete env[k];
    return { ...env, ...extra };
  }

  async #go(args: string[], extra: Record<string, string>, signal?: AbortSignal) {
    try {
      return await this.#exec(this.#o.goBinary, args, {
        cwd: this.#o.dir,
        env: this.#env(extra),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        throw new PolyarchError({
          code: "E_TOOLCHAIN",
          message: `the Go toolchain "${this.#o.goBinary}" was not found`,
          hint: "Install Go 1.22 or newer (bash .ci/setup does it on Debian) or put it on PATH.",
          cause: e,
        });
      }
      throw e;
    }
  }

  /** Finds the main package and checks it is one. */
  async #resolvePackage(signal?: AbortSignal): Promise<GoPackage> {
    const first = this.#o.platforms[0]!;
    const r = await this.#go(
      // -find: name and path only, without resolving imports (those errors come from the compile).
      ["list", "-find", "-json=Name,ImportPath,Dir,Error", "--", this.#o.mainPackage],
      { ...toGoEnv(first), CGO_ENABLED: "0" },
      signal,
    );
    if (r.code !== 0) {
      throw new PolyarchError({
        code: "E_NO_MAIN",
        message: `no Go package to build at ${path.join(this.#o.dir, this.#o.mainPackage)}: ${firstLine(r.stderr)}`,
        hint: "Point polyarch at a directory that holds a main package (package main with func main).",
        data: { stderr: r.stderr },
      });
    }
    const pkg = JSON.parse(r.stdout) as {
      Name?: string;
      ImportPath?: string;
      Dir?: string;
      Error?: { Err?: string };
    };
    if (pkg.Error?.Err) {
      throw new PolyarchError({
        code: "E_NO_MAIN",
        message: `cannot load ${this.#o.mainPackage}: ${pkg.Error.Err}`,
        hint: "Fix the package so `go list` accepts it.",
      });
    }
    if (pkg.Name !== "main") {
      throw new PolyarchError({
        code: "E_NO_MAIN",
        message: `${path.join(this.#o.dir, this.#o.mainPackage)} holds package ${pkg.Name ?? "(unknown)"}, not a main package`,
        hint: "Build a directory whose Go files say `package main` and define func main.",
      });
    }
    const dir = pkg.Dir ?? path.join(this.#o.dir, this.#o.mainPackage);
    const importPath = pkg.ImportPath ?? "main";
    const base =
      importPath === "command-line-arguments" ? path.basename(dir) : path.posix.basename(importPath);
    // The same rule `go build` uses for the output name, minus a major-version suffix like /v2.
    const name = /^v[0-9]+$/.test(base) ? path.posix.basename(path.posix.dirname(importPath)) : base;
    return { name, importPath, dir };
  }

  /** Refuses platforms this toolchain cannot target. */
  async #checkPlatforms(signal?: AbortSignal): Promise<void> {
    const r = await this.#go(["tool", "dist", "list"], {}, signal);
    if (r.code !== 0) {
      throw new PolyarchError({
        code: "E_TOOLCHAIN",
        message: `go tool dist list failed: ${firstLine(r.stderr)}`,
        hint: "Check that the Go installation works: go version.",
      });
    }
    const known = new Set(r.stdout.split("\n").map((s) => s.trim()));
    for (const p of this.#o.platforms) {
      if (!known.has(`${p.os}/${p.architecture}`)) {
        throw new PolyarchError({
          code: "E_PLATFORM",
          message: `cannot cross-compile for ${formatPlatform(p)}: this Go toolchain has no ${p.os}/${p.architecture} target`,
          hint: "Run `go tool dist list` to see the targets it supports.",
        });
      }
    }
  }

  async build(opts: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void } = {}): Promise<BuildResult> {
    const emit = opts.onEvent ?? (() => {});
    const o = this.#o;
    // Stop every compile on the first failure (or when the caller aborts).
    const stop = new AbortController();
    const onAbort = () => stop.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const signal = stop.signal;
    // 1. Refuse targets the toolchain lacks. Checked alongside the compiles, not before them
    // (it costs a process start): a failure stops every compile and explains them best.
    const checkP = this.#checkPlatforms(opts.signal);
    checkP.catch((e: unknown) => stop.abort(e));
    // 2. Load the package while the compiles run; `go build -o <dir>/` names the binary itself.
    // Not tied to `stop`: when a compile fails, the package error (if any) explains it better.
    const pkgP = this.#resolvePackage(opts.signal);
    pkgP.catch(() => {});
    const tarOpts: TarOptions = { mtime: o.sourceDateEpoch, uid: 0, gid: 0 };
    const created = isoTime(o.sourceDateEpoch);
    const pool = new LayerPool(Math.max(1, Math.min(o.jobs, o.platforms.length)));
    const slots = o.limiter ?? new Semaphore(Math.max(1, o.jobs));
    try {
      const staticP = pkgP.then((pkg) => this.#staticLayer(pkg, tarOpts, emit, pool));
      staticP.catch(() => {});
      const images = await Promise.all(
        o.platforms.map(async (platform): Promise<Image> => {
          try {
            return await this.#platformImage(
              platform,
              pkgP,
              staticP,
              slots,
              pool,
              tarOpts,
              created,
              emit,
              signal,
            );
          } catch (e) {
            stop.abort(e);
            throw e;
          }
        }),
      ).catch(async (e) => {
        // An unknown target, then a package that cannot be loaded, explain every compile
        // failure better than the compiler does.
        const reason = async (p: Promise<unknown>) =>
          p.then(
            () => undefined,
            (pe: unknown) => pe,
          );
        throw (await reason(checkP)) ?? (await reason(pkgP)) ?? e;
      });
      await checkP;
      const pkg = await pkgP;
      emit({ type: "resolve", target: pkg.importPath, name: pkg.name });
      const index = await assembleIndex(images, { [Annotation.CREATED]: created, ...o.image.annotations });
      // Housekeeping, at most once a day: entries unused for five days go (Go's GOCACHE rule).
      await trimCache(o.cacheDir).catch(() => undefined);
      return { index, name: pkg.name };
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      await pool.close();
    }
  }

  async #platformImage(
    platform: Platform,
    pkgP: Promise<GoPackage>,
    staticP: Promise<FileLayer | undefined>,
    slots: Semaphore,
    pool: LayerPool,
    tarOpts: TarOptions,
    created: string,
    emit: (e: BuildEvent) => void,
    signal: AbortSignal,
  ): Promise<Image> {
    const o = this.#o;
    const isWindows = platform.os === "windows";
    const pkgKey = createHash("sha256").update(`${o.dir}\0${o.mainPackage}`).digest("hex").slice(0, 16);
    const outDir = path.join(o.cacheDir, "bin", pkgKey, formatPlatform(platform).replaceAll("/", "-"));
    await mkdir(outDir, { recursive: true });
    const ms = await slots.run(async () => {
      signal.throwIfAborted();
      emit({ type: "compile-start", platform });
      const t0 = performance.now();
      const args = ["build", "-trimpath", "-o", `${outDir}${path.sep}`];
      if (o.ldflags) args.push(`-ldflags=${o.ldflags}`);
      if (o.buildTags?.length) args.push(`-tags=${o.buildTags.join(",")}`);
      args.push("--", o.mainPackage);
      const r = await this.#go(args, { ...toGoEnv(platform), CGO_ENABLED: "0" }, signal);
      if (r.code !== 0) {
        throw new PolyarchError({
          code: "E_COMPILE",
          message: `go build failed for ${formatPlatform(platform)}:\n${r.stderr.trimEnd()}`,
          hint: "Fix the compile error above; `go build` with the same GOOS/GOARCH shows it too.",
          data: { platform: formatPlatform(platform), stderr: r.stderr },
        });
      }
      return performance.now() - t0;
    });
    emit({ type: "compile-done", platform, ms });
    const pkg = await pkgP;
    const binName = isWindows ? `${pkg.name}.exe` : pkg.name;
    const binary = path.join(outDir, binName);

    // Windows images keep files under Files/ (the Windows layer format); the entrypoint is a C:\ path.
    const root = isWindows ? "Files/app" : "app";
    const entries: LayerEntry[] = [
      { type: "dir", path: root, mode: 0o755 },
      { type: "file", path: `${root}/${binName}`, mode: 0o555, source: { file: binary } },
    ];
    if (isWindows) entries.push({ type: "dir", path: "Hives", mode: 0o755 });
    const binLayer = await this.#cachedLayer(
      entries,
      tarOpts,
      `polyarch: go build -trimpath ${pkg.importPath} (${formatPlatform(platform)})`,
      pool,
    );
    emit({
      type: "layer",
      platform,
      digest: binLayer.digest,
      size: binLayer.size,
      cached: binLayer.cached,
      what: "binary",
    });
    const staticLayer = await staticP;
    const layers = staticLayer && !isWindows ? [staticLayer, binLayer] : [binLayer];
    const base = o.base?.get(formatPlatform(platform));
    if (o.base && !base) {
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `no base image resolved for ${formatPlatform(platform)}`,
        hint: "This is a bug in polyarch.",
      });
    }
    // scratch has no PATH; a base brings its own, which ours must not replace.
    const env =
      isWindows || base
        ? [...o.image.env]
        : ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin", ...o.image.env];
    if (staticLayer && !isWindows) env.push(`POLYARCH_DATA_PATH=${DATA_DIR}`, `KO_DATA_PATH=${DATA_DIR}`);
    const image = assembleImage({
      platform,
      ...(base ? { base } : {}),
      layers,
      created,
      entrypoint: o.image.entrypoint ?? [isWindows ? `C:\\app\\${binName}` : `${APP_DIR}/${binName}`],
      ...(o.image.cmd ? { cmd: o.image.cmd } : {}),
      env,
      ...(o.image.user ? { user: o.image.user } : {}),
      ...(o.image.workingDir
        ? { workingDir: o.image.workingDir }
        : base
          ? {}
          : { workingDir: isWindows ? "C:\\" : "/" }),
      exposedPorts: o.image.exposedPorts,
      labels: o.image.labels,
      annotations: { [Annotation.CREATED]: created, ...o.image.annotations },
    });
    const d = await image.descriptor();
    emit({ type: "image", platform, digest: d.digest, size: d.size });
    return image;
  }

  async #staticLayer(
    pkg: GoPackage,
    tarOpts: TarOptions,
    emit: (e: BuildEvent) => void,
    pool: LayerPool,
  ): Promise<FileLayer | undefined> {
    const dir = path.join(pkg.dir, STATIC_DIR_NAME);
    const link = await lstat(dir).catch(() => undefined);
    if (link?.isSymbolicLink()) {
      // kodata/ may be a link, but only to a directory inside the package (issue 8): never
      // pack files from elsewhere on the machine.
      const [real, realPkg] = await Promise.all([realpath(dir).catch(() => ""), realpath(pkg.dir)]);
      if (!real || !real.startsWith(realPkg + path.sep)) {
        throw new PolyarchError({
          code: "E_TAR",
          message: `${STATIC_DIR_NAME}/ in ${pkg.dir} is a symlink to ${real || "a missing path"}, outside the package`,
          hint: `Put the static files in ${STATIC_DIR_NAME}/ itself, or link to a directory inside the package.`,
        });
      }
    }
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    const entries = await entriesFromDirectory(dir, DATA_DIR.slice(1));
    const layer = await this.#cachedLayer(
      entries,
      tarOpts,
      `polyarch: static files ${STATIC_DIR_NAME}/ → ${DATA_DIR}`,
      pool,
    );
    emit({
      type: "layer",
      platform: "all",
      digest: layer.digest,
      size: layer.size,
      cached: layer.cached,
      what: "static files",
    });
    return layer;
  }

  /** The compressed blob cached for `diffId`, if it is still there and whole. */
  async #layerFromCache(
    diffId: Digest,
    createdBy: string,
  ): Promise<(FileLayer & { cached: boolean }) | undefined> {
    const cacheDir = this.#o.cacheDir;
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
  async #cachedLayer(
    entries: LayerEntry[],
    tarOpts: TarOptions,
    createdBy: string,
    pool: LayerPool,
  ): Promise<FileLayer & { cached: boolean }> {
    const cacheDir = this.#o.cacheDir;
    const fp = await fingerprint(entries, tarOpts);
    const fpFile = path.join(cacheDir, "stat", fp.key);
    let diffId = await readFile(fpFile, "utf8").then(
      (s) => (isDigest(s.trim()) ? (s.trim() as Digest) : undefined),
      () => undefined,
    );
    const known = diffId !== undefined;
    // A Go binary whose build ID this cache has never seen is new content: compressing it
    // directly beats hashing it first only to miss. Other files (a new checkout's static
    // files, say) are hashed first, since that is much cheaper than compressing.
    if (!diffId && !fp.goBinary) diffId = (await diffIdOf(entries, tarOpts)).diffId;
    if (diffId) {
      const hit = await this.#layerFromCache(diffId, createdBy);
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
}

/**
 * Bump when the tar format changes, so old fingerprints are not reused. The gzip encoder's
 * own version (ENCODER_ID) keys the diffID → blob index, so a new encoder never picks up
 * blobs an older one compressed.
 */
const LAYER_FORMAT = "polyarch-layer-1";

function layerIndexFile(cacheDir: string, diffId: Digest): string {
  return path.join(cacheDir, "layers", ENCODER_ID, digestHex(diffId));
}

/**
 * A key for "same entries, same files on disk, same options", from metadata only, and
 * whether a Go binary (keyed by its build ID) is among the files.
 */
async function fingerprint(
  entries: readonly LayerEntry[],
  opts: TarOptions,
): Promise<{ key: string; goBinary: boolean }> {
  let goBinary = false;
  const h = createHash("sha256").update(`${LAYER_FORMAT}\0${JSON.stringify(opts)}\0`);
  for (const e of entries) {
    if (e.type === "file") {
      if ("file" in e.source) {
        const st = await stat(e.source.file, { bigint: true });
        const buildId = await readGoBuildId(e.source.file);
        if (buildId) goBinary = true;
        // Go re-touches an up-to-date binary's mtime, so its build ID (whose last part hashes
        // the linked file) is the stable key; other files use their stat identity.
        h.update(
          buildId
            ? `g\0${e.path}\0${e.mode}\0${buildId}\0${st.size}\0`
            : `f\0${e.path}\0${e.mode}\0${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}\0`,
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
export async function readGoBuildId(file: string): Promise<string | undefined> {
  const fh = await open(file, "r");
  let head: Buffer;
  try {
    const buf = Buffer.alloc(32 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
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

function firstLine(s: string): string {
  const lines = s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(0, 3).join("; ") || "no output";
}
