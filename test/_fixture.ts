/**
 * Shared fixtures for the end-to-end tests: the maintenance proxy built once per test run
 * for six platforms, in a throwaway git repository so SOURCE_DATE_EPOCH comes from a commit.
 */
import { chmod, copyFile, cp, link, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { mustRun, run } from "../src/testing/tools.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BIN = path.join(ROOT, "bin", "polyarch.js");
export const SIX = [
  "linux/amd64",
  "linux/arm64",
  "linux/arm/v7",
  "linux/386",
  "linux/ppc64le",
  "linux/s390x",
];
export const COMMIT_TIME = "1700000000";

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `polyarch-${prefix}-`));
}

/** Copies an example into a new git repository with one commit at a fixed time. */
export async function gitExample(example: string, into: string): Promise<string> {
  const dir = path.join(into, example);
  await mkdir(into, { recursive: true });
  await cp(path.join(ROOT, "examples", example), dir, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_DATE: `@${COMMIT_TIME} +0000`,
    GIT_COMMITTER_DATE: `@${COMMIT_TIME} +0000`,
    GIT_AUTHOR_NAME: "t",
    GIT_AUTHOR_EMAIL: "t@example.com",
    GIT_COMMITTER_NAME: "t",
    GIT_COMMITTER_EMAIL: "t@example.com",
  };
  await mustRun("git", ["init", "-q", "-b", "main", dir], { env });
  await mustRun("git", ["-C", dir, "add", "."], { env });
  await mustRun("git", ["-C", dir, "commit", "-q", "-m", "example"], { env });
  return dir;
}

/** Runs the CLI as a user would, with its own cache unless one is given. */
export async function polyarch(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; node?: string; input?: string } = {},
) {
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  delete env["SOURCE_DATE_EPOCH"];
  if (opts.env && "SOURCE_DATE_EPOCH" in opts.env) env["SOURCE_DATE_EPOCH"] = opts.env["SOURCE_DATE_EPOCH"];
  return run(opts.node ?? process.execPath, [BIN, ...args], {
    env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
}

/** `build -f <ctx>/Dockerfile <ctx> -p <platforms>`: the start of a Dockerfile build's arguments. */
export function dockerfileBuild(ctx: string, platforms = "linux/amd64,linux/arm64"): string[] {
  return ["build", "-f", path.join(ctx, "Dockerfile"), ctx, "-p", platforms];
}

export async function cleanup(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** The identity and environment git needs in tests (no global config is assumed). */
export const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@e",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@e",
};

/** A git helper bound to one throwaway repository on branch main. */
export async function gitRepo(dir: string): Promise<(...args: string[]) => Promise<string>> {
  await mustRun("git", ["init", "-q", "-b", "main", dir], { env: GIT_ENV });
  return (...args: string[]) => mustRun("git", ["-C", dir, ...args], { env: GIT_ENV });
}

/** examples/hello built as hello-amd64 and hello-arm64 (static) into `ctx`, from a git copy under `srcDir`. */
export async function helloPerArch(srcDir: string, ctx: string): Promise<string> {
  const src = await gitExample("hello", srcDir);
  await mkdir(ctx, { recursive: true });
  for (const arch of ["amd64", "arm64"])
    await mustRun("go", ["build", "-trimpath", "-o", path.join(ctx, `hello-${arch}`), "."], {
      cwd: src,
      env: { ...process.env, GOOS: "linux", GOARCH: arch, CGO_ENABLED: "0" },
    });
  return ctx;
}

/** The arm64 busybox-static .ci/setup fetches from the machine's Debian mirror. */
export const ARM_BUSYBOX = "/var/cache/polyarch-test/busybox-arm64/bin/busybox";

/**
 * Seed 001's shape as a build context in `ctx`: each architecture's static busybox and a
 * `FROM scratch` Dockerfile whose entrypoint prints the CPU (`uname -m`). Returns the Dockerfile.
 */
export async function unameContext(ctx: string): Promise<string> {
  for (const [arch, bb] of [
    ["amd64", "/bin/busybox"],
    ["arm64", ARM_BUSYBOX],
  ] as const) {
    await mkdir(path.join(ctx, arch), { recursive: true });
    await copyFile(bb, path.join(ctx, arch, "busybox"));
    await chmod(path.join(ctx, arch, "busybox"), 0o755);
  }
  const dockerfile = path.join(ctx, "Dockerfile");
  await writeFile(
    dockerfile,
    'FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}/busybox /bin/busybox\nENTRYPOINT ["/bin/busybox", "uname", "-m"]\n',
  );
  return dockerfile;
}

/**
 * The Debian minbases .ci/setup makes once per machine with mmdebstrap (apt, dpkg, glibc, tcc,
 * libc6-dev) as one linux/amd64 + linux/arm64 base in an OCI layout at `dir`; polyarch unpacks
 * the tarballs itself (ADD of a local tar, natively).
 */
export async function minbaseLayout(dir: string, env: Record<string, string | undefined>): Promise<void> {
  const ctx = `${dir}-ctx`;
  await mkdir(ctx, { recursive: true });
  try {
    for (const arch of ["amd64", "arm64"]) {
      const tarball = `/var/cache/polyarch-test/debian-minbase-${arch}.tar`;
      await stat(tarball).catch(() => {
        throw new Error(`${tarball} is missing: run bash .ci/setup, which makes it with mmdebstrap`);
      });
      const into = path.join(ctx, `minbase-${arch}.tar`);
      await link(tarball, into).catch(() => copyFile(tarball, into));
    }
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM scratch\nARG TARGETARCH\nADD minbase-${TARGETARCH}.tar /\n",
    );
    const r = await polyarch(
      ["build", "-f", path.join(ctx, "Dockerfile"), ctx, "-p", "linux/amd64,linux/arm64", "-o", `oci:${dir}`],
      { env },
    );
    if (r.code !== 0) throw new Error(`building the minbase layout failed:\n${r.stderr}`);
  } finally {
    await cleanup(ctx);
  }
}
