/**
 * The Go builder: cross-compiles a main package once per platform with the host toolchain
 * (no emulation), puts each binary in its own reproducible layer, adds the package's static
 * files (`kodata/`, as ko does) as a shared layer, and assembles an image per platform and
 * an index over them.
 */
import { constants } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { copyFile, link, lstat, mkdir, readdir, readFile, realpath, rename, stat } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import {
  assembleImage,
  assembleIndex,
  type BaseImage,
  type FileLayer,
  isoTime,
} from "../../image/assemble.js";
import type { Image } from "../../image/index.js";
import { LayerCache } from "../../layer/cache.js";
import { entriesFromDirectory, type LayerEntry, type TarOptions } from "../../layer/index.js";
import { LayerPool } from "../../layer/pool.js";
import { Annotation } from "../../manifest/index.js";
import { formatPlatform, hostPlatform, type Platform, toGoEnv } from "../../platform/index.js";
import { exec as defaultExec, type Exec } from "../../util/exec.js";
import type { BuildEvent, Builder, BuildResult, ImageSettings } from "../index.js";
import { Semaphore } from "../../util/limit.js";
import { downloadModules, findUp } from "./modules.js";
import { type CgoOptions, type Compiler, linkFlags, missingFromBase, resolveCompilers } from "./cgo.js";
import { elfLinkage } from "../../util/elf.js";
import { Tree, TreeStore } from "../dockerfile/tree.js";

/** Where the binary goes in the image; static files go to `${APP_DIR}/data`. */
export const APP_DIR = "/app";
export const DATA_DIR = `${APP_DIR}/data`;
/** The static-files directory of a package, named as ko names it so projects can move over. */
export const STATIC_DIR_NAME = "kodata";

/** Fully resolved options: nothing here has a hidden default. */
export interface GoBuildOptions {
  /** Directory go runs in (the module or a directory inside it), absolute. */
  dir: string;
  /** The main package, as `go build` takes it: "." or "./cmd/api". It is the entrypoint. */
  mainPackage: string;
  /** More main packages built into the same image, each as /app/<name> (seed 004's soda). */
  extraMains?: string[];
  platforms: Platform[];
  /** Seconds since the epoch for every timestamp (SOURCE_DATE_EPOCH). */
  sourceDateEpoch: number;
  /** The environment go runs with (PATH, HOME, GOCACHE, GOFLAGS …). */
  env: Record<string, string | undefined>;
  goBinary: string;
  cacheDir: string;
  jobs: number;
  ldflags?: string;
  /**
   * Keep DWARF and the symbol table in the binaries (for delve, gdb, nm). By default they are
   * left out — compiled without DWARF, linked with -s -w — unless GOFLAGS sets -gcflags or
   * -ldflags itself: images are a third smaller and builds faster, and stack traces stay whole
   * (they come from the pclntab, which is kept).
   */
  debugInfo?: boolean;
  buildTags?: string[];
  /** CGO_ENABLED=1 with a C compiler per platform; absent: CGO_ENABLED=0 (static, pure Go). */
  cgo?: CgoOptions;
  image: ImageSettings;

  /** Shared compile slots when several builds run at once (defaults to `jobs` slots of its own). */
  limiter?: Semaphore;
  /** The layer cache shared with other builders (default: one under cacheDir). */
  layerCache?: LayerCache;
  /**
   * Base image per platform (formatPlatform key); scratch when absent. May still be resolving:
   * the compiles start meanwhile (nothing of the base is needed before a binary is linked),
   * and a base that cannot be read stops them and is the error reported.
   */
  base?: Map<string, BaseImage> | Promise<Map<string, BaseImage>>;
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
  readonly #cache: LayerCache;
  /** The C compiler per platform (formatPlatform key) of a cgo build. */
  #compilers = new Map<string, Compiler>();
  constructor(opts: GoBuildOptions) {
    this.#o = opts;
    this.#exec = opts.exec ?? defaultExec;
    this.#cache = opts.layerCache ?? new LayerCache(opts.cacheDir);
  }

  /** CGO_ENABLED, and CC/CXX for a cgo build, for one platform. */
  #cgoEnv(p: Platform): Record<string, string> {
    if (!this.#o.cgo) return { CGO_ENABLED: "0" };
    const c = this.#compilers.get(formatPlatform(p));
    return { CGO_ENABLED: "1", ...(c ? { CC: c.cc } : {}), ...(c?.cxx ? { CXX: c.cxx } : {}) };
  }

  /** Static on scratch, dynamic on a base, unless the user said which. */
  get #link(): "static" | "dynamic" {
    return this.#o.cgo?.link ?? (this.#o.base ? "dynamic" : "static");
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

  /** The main package and the extra ones, checked to be main packages with distinct names. */
  async #resolvePackages(signal?: AbortSignal): Promise<GoPackage[]> {
    const all = this.#mains;
    const pkgs = await Promise.all(all.map((m) => this.#resolvePackage(m, signal)));
    const seen = new Map<string, string>();
    for (const [i, p] of pkgs.entries()) {
      const other = seen.get(p.name);
      if (other !== undefined)
        throw new PolyarchError({
          code: "E_INPUT",
          message: `main packages ${other} and ${all[i]} both build a binary named ${p.name}`,
          hint: "Give each main package of one image its own directory name.",
        });
      seen.set(p.name, all[i]!);
    }
    return pkgs;
  }

  /** Finds a main package and checks it is one. */
  async #resolvePackage(main: string, signal?: AbortSignal): Promise<GoPackage> {
    const first = this.#o.platforms[0]!;
    const r = await this.#go(
      // -find: name and path only, without resolving imports (those errors come from the compile).
      ["list", "-find", "-json=Name,ImportPath,Dir,Error", "--", main],
      { ...toGoEnv(first), ...this.#cgoEnv(first) },
      signal,
    );
    if (r.code !== 0) {
      throw new PolyarchError({
        code: "E_NO_MAIN",
        message: `no Go package to build at ${path.join(this.#o.dir, main)}: ${firstLine(r.stderr)}`,
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
        message: `cannot load ${main}: ${pkg.Error.Err}`,
        hint: "Fix the package so `go list` accepts it.",
      });
    }
    if (pkg.Name !== "main") {
      throw new PolyarchError({
        code: "E_NO_MAIN",
        message: `${path.join(this.#o.dir, main)} holds package ${pkg.Name ?? "(unknown)"}, not a main package`,
        hint: "Build a directory whose Go files say `package main` and define func main.",
      });
    }
    const dir = pkg.Dir ?? path.join(this.#o.dir, main);
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
    // 0. A cgo build needs a C compiler for every platform: all missing ones are named before any work.
    if (o.cgo) {
      const host = hostPlatform();
      this.#compilers = resolveCompilers(o.platforms, o.cgo, o.env, { ...host, os: "linux" });
    }
    // 1. Refuse targets the toolchain lacks. Checked alongside the compiles, not before them
    // (it costs a process start): a failure stops every compile and explains them best.
    const checkP = this.#checkPlatforms(opts.signal);
    checkP.catch((e: unknown) => stop.abort(e));
    // 2. Load the package while the compiles run; `go build -o <dir>/` names the binary itself.
    // Not tied to `stop`: when a compile fails, the package error (if any) explains it better.
    const pkgsP = this.#resolvePackages(opts.signal);
    pkgsP.catch(() => {});
    const pkgP = pkgsP.then((p) => p[0]!);
    pkgP.catch(() => {});
    // 3. The base, if still being read.
    const baseP = Promise.resolve(o.base);
    baseP.catch((e: unknown) => stop.abort(e));
    // 4. Module dependencies, once for every platform, before any compile needs them.
    const modulesP = downloadModules({
      dir: o.dir,
      goBinary: o.goBinary,
      env: this.#env({}),
      exec: this.#exec,
      cacheDir: o.cacheDir,
      signal,
    });
    modulesP.catch((e: unknown) => stop.abort(e));
    const tarOpts: TarOptions = { mtime: o.sourceDateEpoch, uid: 0, gid: 0 };
    const created = isoTime(o.sourceDateEpoch);
    const pool = new LayerPool(Math.max(1, Math.min(o.jobs, o.platforms.length)));
    const slots = o.limiter ?? new Semaphore(Math.max(1, o.jobs));
    // The binaries kept for this module seed a checkout's output directory, so go links only
    // what is out of date (nothing, for a new checkout of unchanged code).
    const binP = this.#binDirs();
    try {
      const staticP = pkgP.then((pkg) => this.#staticLayer(pkg, tarOpts, emit, pool));
      staticP.catch(() => {});
      const images = await Promise.all(
        o.platforms.map(async (platform): Promise<Image> => {
          try {
            await modulesP;
            return await this.#platformImage(
              platform,
              await binP,
              baseP,
              pkgsP,
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
        throw (
          (await reason(baseP)) ??
          (await reason(checkP)) ??
          (await reason(modulesP)) ??
          (await reason(pkgP)) ??
          e
        );
      });
      await checkP;
      const pkg = await pkgP;
      emit({ type: "resolve", target: pkg.importPath, name: pkg.name });
      const index = await assembleIndex(images, { [Annotation.CREATED]: created, ...o.image.annotations });
      // Housekeeping, at most once a day: entries unused for five days go (Go's GOCACHE rule).
      await this.#cache.trim();
      return { index, name: pkg.name };
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      await pool.close();
    }
  }

  /** The main packages built into the image, DIR's first. */
  get #mains(): string[] {
    return [this.#o.mainPackage, ...(this.#o.extraMains ?? [])];
  }

  /**
   * go build's flags but -o: -trimpath; without debug info unless asked (or GOFLAGS chooses the
   * compiler's or linker's flags itself — a -gcflags or -ldflags here would replace those); a
   * static cgo binary's link flags; then the user's own -ldflags, which come last and win.
   */
  #flags(): string[] {
    const o = this.#o;
    const args = ["-trimpath"];
    if (!o.debugInfo && !this.#inGoflags("gcflags")) args.push("-gcflags=all=-dwarf=false");
    const link = o.cgo ? linkFlags(this.#link) : { ldflags: [], tags: [] };
    const ldflags = [
      ...(this.#stripped ? ["-s", "-w"] : []),
      ...link.ldflags,
      ...(o.ldflags ? [o.ldflags] : []),
    ];
    if (ldflags.length) args.push(`-ldflags=${ldflags.join(" ")}`);
    const tags = [...(o.buildTags ?? []), ...link.tags.filter((t) => !o.buildTags?.includes(t))];
    if (tags.length) args.push(`-tags=${tags.join(",")}`);
    return args;
  }

  /** Whether GOFLAGS (the user's environment) sets this build flag itself. */
  #inGoflags(name: string): boolean {
    return new RegExp(`(^|\\s)--?${name}(=|\\s|$)`).test(this.#o.env["GOFLAGS"] ?? "");
  }

  /** Linked with -s -w: debug info not asked for, and GOFLAGS leaves the link flags to us. */
  get #stripped(): boolean {
    return !this.#o.debugInfo && !this.#inGoflags("ldflags");
  }

  /**
   * Where binaries go, per platform below each: `out`, this checkout's own output directory
   * (by its directory), and `kept`, where the last binaries of this package are kept (by the
   * module path and the package's place in it — not by the checkout's directory — so a new
   * checkout of the same code finds them). go build decides from each binary's build ID
   * whether it is up to date (with -trimpath that ID does not depend on the directory), so a
   * stale or foreign binary in `kept` only costs the link it would have cost anyway.
   */
  async #binDirs(): Promise<{ out: string; kept: string }> {
    const o = this.#o;
    const gomod = await findUp(o.dir, "go.mod");
    const mod =
      gomod && /^\s*module\s+("?)([^\s"]+)\1\s*$/m.exec(await readFile(gomod, "utf8").catch(() => ""))?.[2];
    const dir = (id: string) =>
      path.join(
        o.cacheDir,
        "bin",
        createHash("sha256")
          .update(`${id}\0${this.#mains.join("\0")}`)
          .digest("hex")
          .slice(0, 16),
      );
    return {
      out: dir(o.dir),
      kept: dir(gomod && mod ? `${mod}\0${path.relative(path.dirname(gomod), o.dir)}` : o.dir),
    };
  }

  async #platformImage(
    platform: Platform,
    bin: { out: string; kept: string },
    baseP: Promise<Map<string, BaseImage> | undefined>,
    pkgsP: Promise<GoPackage[]>,
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
    // This checkout's output directory; what it lacks comes from the kept binaries.
    const platKey = formatPlatform(platform).replaceAll("/", "-");
    const outDir = path.join(bin.out, platKey);
    const keptDir = path.join(bin.kept, platKey);
    await mkdir(outDir, { recursive: true });
    await seedFrom(keptDir, outDir);
    const ms = await slots.run(async () => {
      signal.throwIfAborted();
      emit({ type: "step-start", platform, step: "compile" });
      const t0 = performance.now();
      const args = ["build", ...this.#flags(), "-o", `${outDir}${path.sep}`];
      // With -o <dir>/, go build writes each main package's binary into the directory.
      args.push("--", ...this.#mains);
      const r = await this.#go(args, { ...toGoEnv(platform), ...this.#cgoEnv(platform) }, signal);
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
    emit({ type: "step-done", platform, step: "compile", ms, where: "native" });
    const pkgs = await pkgsP;
    const pkg = pkgs[0]!;
    const nameOf = (p: GoPackage) => (isWindows ? `${p.name}.exe` : p.name);
    // Keeping is an optimisation: a cache that cannot take them costs the next link, not this build.
    await keepNew(
      outDir,
      keptDir,
      pkgs.map((p) => nameOf(p)),
    ).catch(() => {});
    const binName = nameOf(pkg);
    const bases = await baseP;
    const base = bases?.get(formatPlatform(platform));
    if (bases && !base) {
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `no base image resolved for ${formatPlatform(platform)}`,
        hint: "This is a bug in polyarch.",
      });
    }
    if (o.cgo && !isWindows)
      await this.#checkLinkage(
        platform,
        pkgs.map((p) => ({ name: p.name, file: path.join(outDir, nameOf(p)) })),
        base,
      );

    // Windows images keep files under Files/ (the Windows layer format); the entrypoint is a C:\ path.
    const root = isWindows ? "Files/app" : "app";
    const entries: LayerEntry[] = [
      { type: "dir", path: root, mode: 0o755 },
      ...pkgs.map((p): LayerEntry => ({
        type: "file",
        path: `${root}/${nameOf(p)}`,
        mode: 0o555,
        source: { file: path.join(outDir, nameOf(p)) },
      })),
    ];
    if (isWindows) entries.push({ type: "dir", path: "Hives", mode: 0o755 });
    const binLayer = await this.#cache.layer(
      entries,
      tarOpts,
      // Not the flags themselves: the user's -ldflags may carry -X values meant for the binary only.
      `polyarch: go build -trimpath${this.#stripped ? " (no debug info)" : ""} ${pkgs.map((p) => p.importPath).join(" ")} (${formatPlatform(platform)})`,
      pool,
    );
    emit({
      type: "layer",
      platform,
      digest: binLayer.digest,
      size: binLayer.size,
      cached: binLayer.cached,
      what: "binary",
      file: binLayer.file,
    });
    const staticLayer = await staticP;
    const layers = staticLayer && !isWindows ? [staticLayer, binLayer] : [binLayer];
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

  /**
   * A dynamically linked cgo binary runs only where its loader and libraries are: each one it
   * names must be in the base (none is, on scratch), or the build stops and says which.
   */
  async #checkLinkage(
    platform: Platform,
    binaries: { name: string; file: string }[],
    base: BaseImage | undefined,
  ): Promise<void> {
    let tree: Promise<Tree> | undefined;
    for (const b of binaries) {
      const linkage = await elfLinkage(b.file);
      if (!linkage || (!linkage.interpreter && !linkage.needed.length)) continue;
      tree ??= base ? TreeStore.of(this.#cache).tree(base.layers) : Promise.resolve(new Tree());
      const missing = missingFromBase(
        linkage,
        await tree,
        this.#compilers.get(formatPlatform(platform))?.triplet,
      );
      if (missing.length) {
        const baseName = base ? (base.name ?? "base image") : "scratch";
        throw new PolyarchError({
          code: "E_BASE",
          message: `the ${formatPlatform(platform)} binary ${b.name} is linked dynamically (cgo) and needs ${missing.join(", ")}, which the ${formatPlatform(platform)} image of ${baseName} does not have`,
          hint: base
            ? "Use a base that carries that C library for the platform (for example a Debian image for glibc), or link statically: cgo: static in polyarch.yaml (--cgo static)."
            : "Link statically (the default on scratch; cgo: static, --cgo static), or build on a base that carries the C library (--base).",
          data: { platform: formatPlatform(platform), missing },
        });
      }
    }
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
    const layer = await this.#cache.layer(
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
      file: layer.file,
    });
    return layer;
  }
}

/**
 * Links the kept binaries that an output directory lacks into it (a copy where a link cannot be
 * made). go never writes into an existing output: it renames a new binary over it or removes
 * it first, so a kept file is never changed through the link.
 */
async function seedFrom(kept: string, out: string): Promise<void> {
  const [names, present] = await Promise.all([
    readdir(kept).catch(() => [] as string[]),
    readdir(out).catch(() => [] as string[]),
  ]);
  await Promise.all(
    names
      .filter((n) => !n.startsWith(".") && !present.includes(n))
      .map(async (n) => {
        const from = path.join(kept, n);
        const to = path.join(out, n);
        await link(from, to)
          .catch(() => copyFile(from, to, constants.COPYFILE_FICLONE))
          .catch(() => {
            // Gone meanwhile (another build replaced it): go links this one anew.
          });
      }),
  );
}

/**
 * Keeps the binaries of this build that the kept ones are not (by inode: the kept file is a
 * link to an output), atomically through a rename, for the next checkout to start from.
 */
async function keepNew(out: string, kept: string, names: string[]): Promise<void> {
  await mkdir(kept, { recursive: true });
  for (const n of names) {
    const [mine, theirs] = await Promise.all([
      stat(path.join(out, n)),
      stat(path.join(kept, n)).catch(() => undefined),
    ]);
    if (theirs && theirs.ino === mine.ino && theirs.dev === mine.dev) continue;
    const tmp = path.join(kept, `.${n}.${process.pid}.${randomBytes(4).toString("hex")}`);
    await link(path.join(out, n), tmp).catch(() =>
      copyFile(path.join(out, n), tmp, constants.COPYFILE_FICLONE),
    );
    await rename(tmp, path.join(kept, n));
  }
}

function firstLine(s: string): string {
  const lines = s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(0, 3).join("; ") || "no output";
}
