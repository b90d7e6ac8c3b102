import { readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  CONFIG_FILE,
  type ConfigFlags,
  describeConfig,
  loadConfigFile,
  parsePolyarchFile,
  type ResolvedConfig,
  resolveConfig,
} from "../config/index.js";
import { PolyarchError } from "../errors.js";
import { readGit } from "../git/index.js";
import { expandTags } from "../tags/index.js";
import { exec } from "../util/exec.js";
import { type CliIO, table } from "./_io.js";
import { makeOrchestrator } from "./_world.js";
import { formatPlatform, type Platform } from "../platform/index.js";

export async function loadResolved(io: CliIO, flags: ConfigFlags): Promise<ResolvedConfig> {
  const file = await loadConfigFile(io.cwd, flags.config);
  return resolveConfig(io.cwd, file, flags, io.env);
}

/**
 * `platforms: all` (ko's --platform=all): every platform of each such image's base, read now
 * from its registry or layout; an `all` top-level list becomes the union of them.
 */
export async function withBasePlatforms(
  c: ResolvedConfig,
  io: CliIO,
  opts: { insecure?: string[]; signal?: AbortSignal } = {},
): Promise<ResolvedConfig> {
  if (!c.images.some((im) => im.platforms.ofBase)) return c;
  const orch = makeOrchestrator(io, opts.insecure ? { insecure: opts.insecure } : {});
  try {
    const images = await Promise.all(
      c.images.map(async (im) =>
        im.platforms.ofBase
          ? { ...im, platforms: { ...im.platforms, value: await orch.basePlatforms(im.base!, opts.signal) } }
          : im,
      ),
    );
    const union = new Map<string, Platform>();
    for (const im of images) for (const p of im.platforms.value) union.set(formatPlatform(p), p);
    return {
      ...c,
      images,
      platforms: c.platforms.ofBase ? { ...c.platforms, value: [...union.values()] } : c.platforms,
    };
  } finally {
    await orch.close();
  }
}

/** The branch CI checked out when HEAD is detached (GitHub Actions, GitLab CI). */
export function ciBranch(env: CliIO["env"]): string | undefined {
  if (env["GITHUB_REF_TYPE"] === "branch" && env["GITHUB_REF_NAME"]) return env["GITHUB_REF_NAME"];
  return env["GITHUB_HEAD_REF"] || env["CI_COMMIT_BRANCH"] || undefined;
}

export async function runConfig(flags: ConfigFlags & { json?: boolean }, io: CliIO): Promise<number> {
  const c = await loadResolved(io, flags);
  if (flags.json) io.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
  else io.stdout.write(`${table(describeConfig(c))}\n`);
  return 0;
}

export async function runTags(flags: ConfigFlags & { json?: boolean }, io: CliIO): Promise<number> {
  const c = await loadResolved(io, flags);
  const git = await readGit(io.cwd, {
    env: io.env,
    ...(ciBranch(io.env) ? { branchHint: ciBranch(io.env)! } : {}),
  });
  const tags = expandTags(c.tags.value, git);
  if (git.dirty)
    io.stderr.write(
      "note: the working tree has uncommitted changes; tags carry -dirty and latest is not set\n",
    );
  if (flags.json)
    io.stdout.write(
      `${JSON.stringify({ commit: git.commit, branch: git.branch, dirty: git.dirty, tags }, null, 2)}\n`,
    );
  else for (const t of tags) io.stdout.write(`${t}\n`);
  return 0;
}

/** Directories (relative to root) that hold Go main packages, found with go list per module. */
async function findMainPackages(
  root: string,
  env: CliIO["env"],
  dockerfiles: string[] = [],
): Promise<string[]> {
  const modules: string[] = [];
  const walk = async (dir: string, depth: number) => {
    if (depth > 4) return;
    const names = await readdir(dir).catch(() => [] as string[]);
    if (names.includes("go.mod")) modules.push(dir);
    if (names.includes("Dockerfile")) dockerfiles.push(path.relative(root, dir) || ".");
    for (const n of names.sort()) {
      if (n.startsWith(".") || n === "node_modules" || n === "vendor" || n === "testdata") continue;
      const p = path.join(dir, n);
      if ((await stat(p).catch(() => undefined))?.isDirectory()) await walk(p, depth + 1);
    }
  };
  await walk(root, 0);
  const out = new Set<string>();
  for (const m of modules) {
    const r = await exec("go", ["list", "-f", '{{if eq .Name "main"}}{{.Dir}}{{end}}', "./..."], {
      cwd: m,
      env: { ...env, CGO_ENABLED: "0" },
    });
    if (r.code !== 0) continue;
    for (const d of r.stdout
      .split("\n")
      .map((s) => s.trim())
      .filter(Boolean))
      out.add(path.relative(root, d) || ".");
  }
  return [...out].sort();
}

export async function runInit(flags: { force?: boolean }, io: CliIO): Promise<number> {
  const target = path.join(io.cwd, CONFIG_FILE);
  if (!flags.force && (await stat(target).catch(() => undefined))) {
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `${CONFIG_FILE} already exists here`,
      hint: "Edit it, or pass --force to write a new one.",
    });
  }
  const dockerfiles: string[] = [];
  // A directory with a Dockerfile is built from it (that is how its authors build it today).
  const mains = (await findMainPackages(io.cwd, io.env, dockerfiles)).filter((d) => !dockerfiles.includes(d));
  if (mains.length === 0 && dockerfiles.length === 0) {
    throw new PolyarchError({
      code: "E_NO_MAIN",
      message: `no Go main package and no Dockerfile under ${io.cwd}`,
      hint: "Run polyarch init at the root of a repository with a Go module that has a package main, or a Dockerfile.",
    });
  }
  const used = new Set<string>();
  const images = [
    ...dockerfiles.map((d) => ({ dir: d, docker: true })),
    ...mains.map((d) => ({ dir: d, docker: false })),
  ].map(({ dir, docker }) => {
    let name = (dir === "." ? path.basename(io.cwd) : path.basename(dir))
      .toLowerCase()
      .replace(/[^a-z0-9._-]/g, "-");
    while (used.has(name)) name = `${name}-2`;
    used.add(name);
    if (docker)
      return `  - name: ${name}\n    dir: ${dir}\n    dockerfile: Dockerfile   # steps that need no process run natively; see polyarch run --dry-run\n    # buildArgs: { ARCH: "{{arch}}" }\n    # target: final\n`;
    return `  - name: ${name}\n    dir: ${dir}\n    # base: scratch          # or a registry image; each platform uses the base's image for it\n    # ports: [8080]\n    # env: { LOG_LEVEL: info }\n    # user: "65532:65532"\n`;
  });
  const text = `# polyarch.yaml — what \`polyarch run\` builds and where it publishes it.
# Precedence for every value: flag > environment variable > environment section > this file > default.

images:
${images.join("")}
# Platforms for every image (PLATFORMS="linux/amd64 linux/arm64" or --platform override it).
platforms: [linux/amd64, linux/arm64, linux/arm/v7]

# Where images go: <registry>/<repository>/<image name>. Without a registry, \`polyarch run\`
# writes an OCI layout to out/oci. REGISTRY / REPOSITORY or --registry / --repository override.
destination:
  # registry: ghcr.io
  # repository: my-org

# Tag rules, in order (polyarch tags prints what they give for this checkout):
#   semver (v1.2.3 tag → 1.2.3, 1.2, 1), commit, commit-short (length), latest (default branch
#   only; always: true to lift that), branch, raw: <value>; each may take prefix/suffix.
tags:
  - semver
  - commit-short: { length: 8 }
  - latest

# Also tag each platform's image: arch (1.2.3-arm64) or os-arch (1.2.3-linux-arm64).
# platformTags: arch

# Environments chosen with --env or POLYARCH_ENV override the destination.
# environments:
#   dev:  { repository: my-org/dev }
#   prod: { repository: my-org/prod }

# The lint and test stages of polyarch run (run in each image's directory).
lint: go vet ./...
test: go test ./...
`;
  // Check the starter file loads before writing it: nothing invalid is left behind.
  resolveConfig(io.cwd, parsePolyarchFile(text, CONFIG_FILE), {}, {});
  await writeFile(target, text);
  io.stderr.write(
    `wrote ${CONFIG_FILE} with ${images.length} image${images.length === 1 ? "" : "s"}: ${mains.join(", ")}\n`,
  );
  return 0;
}
