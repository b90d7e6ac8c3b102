/**
 * One place merges flags, environment variables and polyarch.yaml into a fully explicit
 * ResolvedConfig, remembering where each value came from (`polyarch config` shows it).
 * Precedence everywhere: flag > environment variable > the chosen environment's section >
 * the file > default. Nothing below this module reads the environment.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { addContext, PolyarchError } from "../errors.js";
import { formatPlatform, parsePlatformList, type Platform } from "../platform/index.js";
import { cacheRepository, parseReference, type Reference } from "../ref/index.js";
import { DEFAULT_RULES, type TagRule } from "../tags/index.js";
import { type ImageConfigFile, parsePolyarchFile, type PolyarchFile } from "./schema.js";
import { type CgoOptions, cgoOptions } from "../builder/go/cgo.js";

export { parsePolyarchFile, type PolyarchFile, type ImageConfigFile } from "./schema.js";

export const CONFIG_FILE = "polyarch.yaml";
export const DEFAULT_PLATFORMS = ["linux/amd64", "linux/arm64"];

export type Source = "flag" | `env ${string}` | `environment ${string}` | "polyarch.yaml" | "default";

export interface Resolved<T> {
  value: T;
  from: Source;
}

/** Platforms; `ofBase`: "all", every platform of the image's base, read when the run starts. */
export interface ResolvedPlatforms extends Resolved<Platform[]> {
  ofBase?: boolean;
}

/** True for a platform list that is the one word "all". */
export function isAllPlatforms(list: readonly string[] | undefined): boolean {
  return list?.length === 1 && list[0]!.trim().toLowerCase() === "all";
}

export interface ResolvedImage {
  name: string;
  /** Absolute directory go runs in. */
  dir: string;
  main: string;
  extraMains: string[];
  base: string | undefined;
  platforms: ResolvedPlatforms;
  user: string | undefined;
  ports: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  ldflags: string | undefined;
  debugInfo: boolean;
  /** cgo settings (cgo:, cc:, else CGO_ENABLED=1 in the environment); undefined: pure Go. */
  cgo: CgoOptions | undefined;
  entrypoint: string[] | undefined;
  /** For a Dockerfile image: the Dockerfile and context (absolute), target and build args. */
  dockerfile:
    | {
        file: string;
        context: string;
        target: string | undefined;
        buildArgs: Record<string, string>;
        cache: string | undefined;
      }
    | undefined;
  /** Where it is published; undefined means the OCI layout output. */
  reference: Reference | undefined;
}

export interface ResolvedConfig {
  root: string;
  file: string;
  environment: Resolved<string | undefined>;
  registry: Resolved<string | undefined>;
  repository: Resolved<string | undefined>;
  platforms: ResolvedPlatforms;
  tags: Resolved<TagRule[]>;
  platformTags: "arch" | "os-arch" | undefined;
  test: Resolved<string>;
  lint: Resolved<string>;
  images: ResolvedImage[];
  mirror: PolyarchFile["mirror"];
  /** Dockerfile builders by platform (polyarch.yaml builders:). */
  builders: Record<string, string>;
}

export interface ConfigFlags {
  env?: string;
  registry?: string;
  repository?: string;
  platform?: string[];
  config?: string;
}

/** Reads polyarch.yaml from `root` (or the file named by --config). */
export async function loadConfigFile(root: string, file?: string): Promise<PolyarchFile> {
  const f = path.resolve(root, file ?? CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(f, "utf8");
  } catch (e) {
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `cannot read ${path.relative(root, f) || f}`,
      hint:
        (e as NodeJS.ErrnoException).code === "ENOENT"
          ? "Create one with polyarch init, or run in the directory that has it."
          : "Check the file's permissions.",
      cause: e,
    });
  }
  return parsePolyarchFile(text, path.relative(root, f) || CONFIG_FILE);
}

function pick<T>(...candidates: [T | undefined, Source][]): Resolved<T | undefined> {
  for (const [value, from] of candidates) if (value !== undefined && value !== "") return { value, from };
  return { value: undefined, from: "default" };
}

export function resolveConfig(
  root: string,
  file: PolyarchFile,
  flags: ConfigFlags,
  env: Record<string, string | undefined>,
): ResolvedConfig {
  // 1. The environment (dev/prod…), which selects a section of the file.
  const environment = pick<string>(
    [flags.env, "flag"],
    [env["POLYARCH_ENV"], "env POLYARCH_ENV"],
    [file.defaultEnvironment, "polyarch.yaml"],
  );
  const section = environment.value ? file.environments[environment.value] : undefined;
  if (environment.value && !section) {
    const known = Object.keys(file.environments);
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `unknown environment "${environment.value}" (from ${environment.from})`,
      hint: known.length
        ? `${file.file} defines: ${known.join(", ")}.`
        : `Add an environments: section to ${file.file}.`,
    });
  }
  const envSource = `environment ${environment.value ?? ""}` as Source;
  // 2. Destination.
  const registry = pick<string>(
    [flags.registry, "flag"],
    [env["REGISTRY"], "env REGISTRY"],
    [env["DOCKER_REGISTRY"], "env DOCKER_REGISTRY"],
    [section?.registry, envSource],
    [file.destination.registry, "polyarch.yaml"],
  );
  const repository = pick<string>(
    [flags.repository, "flag"],
    [env["REPOSITORY"], "env REPOSITORY"],
    [env["DOCKER_REPOSITORY"], "env DOCKER_REPOSITORY"],
    [section?.repository, envSource],
    [file.destination.repository, "polyarch.yaml"],
  );
  // 3. Platforms: flag > PLATFORMS (seed 000's Makefile variable, space or comma separated) > file > default.
  const rawPlatforms = pick<string[]>(
    [flags.platform?.length ? flags.platform : undefined, "flag"],
    [env["PLATFORMS"] ? [env["PLATFORMS"]] : undefined, "env PLATFORMS"],
    [file.platforms, "polyarch.yaml"],
  );
  const platforms: ResolvedPlatforms = isAllPlatforms(rawPlatforms.value)
    ? { value: [], from: rawPlatforms.from, ofBase: true }
    : { value: parsePlatformList(rawPlatforms.value ?? DEFAULT_PLATFORMS), from: rawPlatforms.from };
  const tags: Resolved<TagRule[]> = file.tags
    ? { value: file.tags, from: "polyarch.yaml" }
    : { value: DEFAULT_RULES, from: "default" };
  const test = pick<string>([env["POLYARCH_TEST"], "env POLYARCH_TEST"], [file.test, "polyarch.yaml"]);
  const lint = pick<string>([env["POLYARCH_LINT"], "env POLYARCH_LINT"], [file.lint, "polyarch.yaml"]);
  const images = file.images.map((im: ImageConfigFile): ResolvedImage => {
    const imagePlatforms: ResolvedPlatforms =
      im.platforms && platforms.from !== "flag" && platforms.from !== "env PLATFORMS"
        ? isAllPlatforms(im.platforms)
          ? { value: [], from: "polyarch.yaml", ofBase: true }
          : { value: parsePlatformList(im.platforms), from: "polyarch.yaml" }
        : platforms;
    if (imagePlatforms.ofBase && (im.builder === "dockerfile" || !im.base))
      throw new PolyarchError({
        code: "E_CONFIG",
        message:
          im.builder === "dockerfile"
            ? `platforms all (from ${imagePlatforms.from}) is for Go images on a base; the Dockerfile image ${im.name} names its platforms`
            : `platforms all (from ${imagePlatforms.from}) builds every platform of an image's base, and image ${im.name} has no base`,
        hint:
          im.builder === "dockerfile"
            ? `List the platforms for ${im.name} (platforms: [linux/amd64, linux/arm64]).`
            : `Give ${im.name} a base: (base: <registry reference or oci:dir>), or list its platforms.`,
      });
    let reference: Reference | undefined;
    if (registry.value) {
      const repo = [repository.value, im.name].filter(Boolean).join("/");
      reference = parseReference(`${registry.value}/${repo}`);
    }
    return {
      name: im.name,
      dir: path.resolve(root, im.dir),
      main: im.main,
      extraMains: im.extraMains ?? [],
      base: im.base,
      platforms: imagePlatforms,
      user: im.user,
      ports: im.ports,
      env: im.env,
      labels: im.labels,
      ldflags: im.ldflags,
      debugInfo: im.debugInfo ?? false,
      cgo:
        im.builder === "go"
          ? cgoOptions({ cgo: im.cgo, cc: im.cc }, env, {
              cgo: `${CONFIG_FILE} images.${im.name}.cgo`,
              cc: `${CONFIG_FILE} images.${im.name}.cc`,
            })
          : undefined,
      entrypoint: im.entrypoint,
      dockerfile:
        im.builder === "dockerfile"
          ? {
              file: path.resolve(root, im.dir, im.dockerfile ?? "Dockerfile"),
              context: path.resolve(root, im.dir, im.context ?? "."),
              target: im.target,
              buildArgs: im.buildArgs,
              cache: im.cache ? cacheRepository(im.cache) : undefined,
            }
          : undefined,
      reference,
    };
  });
  return {
    root,
    file: file.file,
    environment,
    registry,
    repository,
    platforms,
    tags,
    platformTags: file.platformTags,
    test: { value: test.value ?? "go test ./...", from: test.from },
    lint: { value: lint.value ?? "go vet ./...", from: lint.from },
    images,
    mirror: file.mirror,
    builders: file.builders ?? {},
  };
}

/** Rows for `polyarch config`: key, value, where it came from. */
export function describeConfig(c: ResolvedConfig): string[][] {
  const rows: string[][] = [["KEY", "VALUE", "FROM"]];
  const show = (k: string, r: Resolved<unknown>, text: string) => rows.push([k, text || "-", r.from]);
  show("environment", c.environment, c.environment.value ?? "");
  show("registry", c.registry, c.registry.value ?? "");
  show("repository", c.repository, c.repository.value ?? "");
  const shown = (p: ResolvedPlatforms) =>
    p.ofBase && !p.value.length ? "all (every platform of the base)" : p.value.map(formatPlatform).join(",");
  show("platforms", c.platforms, shown(c.platforms));
  show(
    "tags",
    c.tags,
    c.tags.value
      .map((t) => t.type + ("value" in t ? `=${t.value}` : "length" in t && t.length ? `=${t.length}` : ""))
      .join(","),
  );
  show("lint", c.lint, c.lint.value);
  show("test", c.test, c.test.value);
  for (const im of c.images) {
    rows.push([
      `image ${im.name}`,
      im.reference ? `${im.reference.registry}/${im.reference.repository}` : "oci:out/oci (no registry set)",
      c.registry.from,
    ]);
    rows.push([`  ${im.name}.dir`, path.relative(c.root, im.dir) || ".", "polyarch.yaml"]);
    rows.push([`  ${im.name}.platforms`, shown(im.platforms), im.platforms.from]);
    if (im.base) rows.push([`  ${im.name}.base`, im.base, "polyarch.yaml"]);
    if (im.cgo)
      rows.push([
        `  ${im.name}.cgo`,
        [
          im.cgo.link ?? (im.base ? "dynamic (on a base)" : "static (on scratch)"),
          ...Object.entries(im.cgo.cc ?? {}).map(([p, cc]) => `${p}=${cc}`),
        ].join(", "),
        "polyarch.yaml or env CGO_ENABLED",
      ]);
  }
  return rows;
}

/**
 * What can be checked of the images before any work starts (issue 8), so that `run` and
 * `run --dry-run` refuse the same things, and before lint, test or a compile: every image
 * directory exists, every base parses as a reference or an `oci:` layout.
 */
export async function checkImages(c: ResolvedConfig): Promise<void> {
  for (const im of c.images) {
    const where = `${c.file}: image ${im.name}`;
    const st = await stat(im.dir).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new PolyarchError({
        code: "E_CONFIG",
        message: `${where}: its dir ${path.relative(c.root, im.dir) || "."} ${st ? "is not a directory" : "does not exist"}`,
        hint: "Set dir to the directory of the image's Go module or package, relative to polyarch.yaml.",
      });
    }
    if (im.dockerfile) {
      const f = await stat(im.dockerfile.file).catch(() => undefined);
      if (!f?.isFile())
        throw new PolyarchError({
          code: "E_CONFIG",
          message: `${where}: its Dockerfile ${path.relative(c.root, im.dockerfile.file)} does not exist`,
          hint: "Set dockerfile to the Dockerfile's path, relative to the image's dir.",
        });
      const ctx = await stat(im.dockerfile.context).catch(() => undefined);
      if (!ctx?.isDirectory())
        throw new PolyarchError({
          code: "E_CONFIG",
          message: `${where}: its context ${path.relative(c.root, im.dockerfile.context) || "."} is not a directory`,
          hint: "Set context to the build context directory, relative to the image's dir.",
        });
    }
    if (im.base && !im.base.startsWith("oci:")) {
      try {
        parseReference(im.base);
      } catch (e) {
        throw addContext(e, `${where}: base`);
      }
    }
  }
}
