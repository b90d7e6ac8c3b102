/**
 * The Go builder: cross-compiles a main package once per platform with the host toolchain
 * (no emulation), puts each binary in its own reproducible layer, adds the package's static
 * files (`kodata/`, as ko does) as a shared layer, and assembles an image per platform and
 * an index over them.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { type Digest, digestHex } from "../../digest/index.js";
import { PolyarchError } from "../../errors.js";
import { assembleImage, assembleIndex, type FileLayer, isoTime } from "../../image/assemble.js";
import type { Image } from "../../image/index.js";
import {
  diffIdOf,
  entriesFromDirectory,
  type LayerEntry,
  type TarOptions,
  writeLayer,
} from "../../layer/index.js";
import { Annotation } from "../../manifest/index.js";
import { formatPlatform, type Platform, toGoEnv } from "../../platform/index.js";
import { exec as defaultExec, type Exec } from "../../util/exec.js";
import { mapLimit } from "../../util/limit.js";
import type { BuildEvent, Builder, BuildResult } from "../index.js";

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
  };
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
      ["list", "-json", "--", this.#o.mainPackage],
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

  /** Refuses platforms this toolchain cannot target, before any compile starts. */
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
    const { signal } = opts;
    const emit = opts.onEvent ?? (() => {});
    const o = this.#o;
    const [pkg] = await Promise.all([this.#resolvePackage(signal), this.#checkPlatforms(signal)]);
    emit({ type: "resolve", target: pkg.importPath, name: pkg.name });
    const tarOpts: TarOptions = { mtime: o.sourceDateEpoch, uid: 0, gid: 0 };
    const created = isoTime(o.sourceDateEpoch);
    const pkgKey = createHash("sha256").update(`${o.dir}\0${pkg.dir}`).digest("hex").slice(0, 16);

    // Static files, shared by every platform.
    const staticLayer = await this.#staticLayer(pkg, tarOpts, emit);

    const images = await mapLimit(o.platforms, Math.max(1, o.jobs), async (platform): Promise<Image> => {
      signal?.throwIfAborted();
      const isWindows = platform.os === "windows";
      const binName = isWindows ? `${pkg.name}.exe` : pkg.name;
      const outDir = path.join(o.cacheDir, "bin", pkgKey, formatPlatform(platform).replaceAll("/", "-"));
      await mkdir(outDir, { recursive: true });
      const binary = path.join(outDir, binName);
      emit({ type: "compile-start", platform });
      const t0 = performance.now();
      const args = ["build", "-trimpath", "-o", binary];
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
      emit({ type: "compile-done", platform, ms: performance.now() - t0, cached: false });

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
      );
      emit({
        type: "layer",
        platform,
        digest: binLayer.digest,
        size: binLayer.size,
        cached: binLayer.cached,
        what: "binary",
      });
      const layers = staticLayer && !isWindows ? [staticLayer, binLayer] : [binLayer];
      const env = isWindows
        ? [...o.image.env]
        : ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin", ...o.image.env];
      if (staticLayer && !isWindows) env.push(`POLYARCH_DATA_PATH=${DATA_DIR}`, `KO_DATA_PATH=${DATA_DIR}`);
      const image = assembleImage({
        platform,
        layers,
        created,
        entrypoint: [isWindows ? `C:\\app\\${binName}` : `${APP_DIR}/${binName}`],
        ...(o.image.cmd ? { cmd: o.image.cmd } : {}),
        env,
        ...(o.image.user ? { user: o.image.user } : {}),
        workingDir: o.image.workingDir ?? (isWindows ? "C:\\" : "/"),
        exposedPorts: o.image.exposedPorts,
        labels: o.image.labels,
        annotations: { [Annotation.CREATED]: created, ...o.image.annotations },
      });
      const d = await image.descriptor();
      emit({ type: "image", platform, digest: d.digest, size: d.size });
      return image;
    });
    const index = await assembleIndex(images, { [Annotation.CREATED]: created, ...o.image.annotations });
    return { index, name: pkg.name };
  }

  async #staticLayer(
    pkg: GoPackage,
    tarOpts: TarOptions,
    emit: (e: BuildEvent) => void,
  ): Promise<FileLayer | undefined> {
    const dir = path.join(pkg.dir, STATIC_DIR_NAME);
    const st = await stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    const entries = await entriesFromDirectory(dir, DATA_DIR.slice(1));
    const layer = await this.#cachedLayer(
      entries,
      tarOpts,
      `polyarch: static files ${STATIC_DIR_NAME}/ → ${DATA_DIR}`,
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

  /**
   * A layer keyed by its diffID: hashing the tar is cheap, compressing is not, so an unchanged
   * binary reuses the compressed blob from the cache (verified again when it is stored).
   */
  async #cachedLayer(
    entries: LayerEntry[],
    tarOpts: TarOptions,
    createdBy: string,
  ): Promise<FileLayer & { cached: boolean }> {
    const { diffId } = await diffIdOf(entries, tarOpts);
    const cacheDir = this.#o.cacheDir;
    const indexFile = path.join(cacheDir, "layers", digestHex(diffId));
    const cached = await readFile(indexFile, "utf8")
      .then((s) => JSON.parse(s) as { mediaType: string; digest: Digest; size: number })
      .catch(() => undefined);
    if (cached) {
      const file = path.join(cacheDir, "blobs", "sha256", digestHex(cached.digest));
      const st = await stat(file).catch(() => undefined);
      if (st?.size === cached.size) return { ...cached, diffId, file, createdBy, cached: true };
    }
    const tmp = path.join(
      cacheDir,
      "tmp",
      `${digestHex(diffId)}-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    const blob = await writeLayer(entries, tarOpts, tmp);
    if (blob.diffId !== diffId) {
      throw new PolyarchError({
        code: "E_INTERNAL",
        message: `layer tar changed while it was written (${diffId} then ${blob.diffId})`,
        hint: "A file changed during the build; build again.",
      });
    }
    const file = path.join(cacheDir, "blobs", "sha256", digestHex(blob.digest));
    await mkdir(path.dirname(file), { recursive: true });
    await rename(tmp, file);
    await mkdir(path.dirname(indexFile), { recursive: true });
    await writeFile(
      indexFile,
      JSON.stringify({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size }),
    );
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

function firstLine(s: string): string {
  const lines = s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.slice(0, 3).join("; ") || "no output";
}
