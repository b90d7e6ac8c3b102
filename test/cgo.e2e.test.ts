/**
 * cgo, cross-compiled (issue 10 §2): examples/sqlite links SQLite through
 * github.com/mattn/go-sqlite3 (C code). polyarch builds it with Debian's cross toolchains
 * (crossbuild-essential-arm64, -armhf, installed by .ci/setup) for linux/amd64, arm64 and
 * arm/v7 — static on scratch, dynamic on a Debian base — and each binary, run in its image's
 * rootfs (arm through qemu-user), creates a table, inserts a row and reads it back. The
 * module comes from the cache .ci/setup filled (GOPROXY=off: nothing leaves the machine).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parsePlatform } from "../src/platform/index.js";
import { mustRun, runInChroot, unpackPlatform } from "../src/testing/tools.js";
import { elfLinkage } from "../src/util/elf.js";
import { cleanup, gitExample, polyarch, tempDir } from "./_fixture.js";

let work: string;
let src: string;
const THREE = ["linux/amd64", "linux/arm64", "linux/arm/v7"];
// -O0: the test checks cross compiling, linking and running, not the C optimiser (SQLite's
// amalgamation at -O2 takes minutes per platform on two cores).
const env = () => ({
  GOPROXY: "off",
  GOFLAGS: "-mod=mod",
  CGO_CFLAGS: "-O0 -g0",
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
});
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];

/** Unpacks one platform of a layout and runs its entrypoint twice on one database file. */
async function roundTrips(layout: string, platform: string): Promise<{ static: boolean }> {
  const p = parsePlatform(platform);
  const dir = await tempDir("cgo-run");
  try {
    const { rootfs, args, env: imageEnv } = await unpackPlatform(`oci:${layout}:latest`, p, dir);
    const arch = platform.split("/")[1];
    for (const row of [1, 2]) {
      const r = await runInChroot(rootfs, p, [...args, "/notes.db"], imageEnv);
      assert.equal(r.code, 0, `${platform}: ${r.output}`);
      assert.match(r.output, new RegExp(`^row ${row}: hello from linux/${arch} \\(sqlite 3\\.`), platform);
    }
    const linkage = await elfLinkage(path.join(rootfs, args[0]!));
    assert.ok(linkage, `${platform}: the entrypoint is an ELF file`);
    return { static: linkage.interpreter === undefined && linkage.needed.length === 0 };
  } finally {
    await cleanup(dir);
  }
}

/**
 * A base that carries glibc and nothing else (as gcr.io/distroless/base does), per
 * architecture: the loader, libc and libm taken from the Debian minbases .ci/setup makes,
 * with Debian's merged-/usr links, built into a two-platform layout by polyarch.
 */
async function glibcBase(dir: string): Promise<void> {
  const ctx = `${dir}-ctx`;
  const triplets = { amd64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" } as const;
  for (const [arch, triplet] of Object.entries(triplets)) {
    const into = path.join(ctx, arch);
    await mkdir(into, { recursive: true });
    const members = (await mustRun("tar", ["-tf", `/var/cache/polyarch-test/debian-minbase-${arch}.tar`]))
      .split("\n")
      .filter((m) =>
        new RegExp(
          `^\\./(lib|lib64|usr/lib64(/ld-linux[^/]*)?|usr/lib/ld-linux[^/]*|usr/lib/${triplet}/(ld-linux[^/]*|libc\\.so\\.6|libm\\.so\\.6))$`,
        ).test(m),
      );
    await mustRun("tar", [
      "-xf",
      `/var/cache/polyarch-test/debian-minbase-${arch}.tar`,
      "-C",
      into,
      "--no-recursion",
      ...members,
    ]);
  }
  await writeFile(path.join(ctx, "Dockerfile"), "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}/ /\n");
  const r = await polyarch(
    ["build", "-f", path.join(ctx, "Dockerfile"), ctx, "-p", "linux/amd64,linux/arm64", "-o", `oci:${dir}`],
    { env: env() },
  );
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  work = await tempDir("cgo");
  src = await gitExample("sqlite", path.join(work, "src"));
});
after(() => cleanup(work));

describe("cgo cross builds", () => {
  it("go-sqlite3 for linux/amd64, arm64 and arm/v7, static on scratch: each binary stores and reads a row in its rootfs, and the digest is the same twice", async () => {
    const out = path.join(work, "static");
    const build = (o: string) =>
      polyarch(["build", src, "--cgo", "-p", THREE.join(","), "-o", `oci:${o}`], { env: env() });
    const a = await build(out);
    assert.equal(a.code, 0, a.stderr);
    for (const p of THREE) assert.deepEqual(await roundTrips(out, p), { static: true }, p);
    const b = await build(`${out}-again`);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(digestOf(b.stdout), digestOf(a.stdout), "the same digest twice");
  });

  it("on a glibc base (distroless-like, from Debian's libc6) the binaries are linked dynamically and run there (amd64, arm64)", async () => {
    const base = path.join(work, "glibc-base");
    await glibcBase(base);
    const out = path.join(work, "dynamic");
    const r = await polyarch(
      ["build", src, "--cgo", "--base", `oci:${base}`, "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stderr);
    for (const p of ["linux/amd64", "linux/arm64"])
      assert.deepEqual(await roundTrips(out, p), { static: false }, p);
  });

  it("a platform without a C cross compiler is refused before any compile, naming the package to install; nothing is written", async () => {
    const out = path.join(work, "no-cc");
    const r = await polyarch(["build", src, "--cgo", "-p", "linux/amd64,linux/s390x", "-o", `oci:${out}`], {
      env: env(),
    });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /no C compiler for the cgo build on linux\/s390x \(s390x-linux-gnu-gcc is not on PATH\)/,
    );
    assert.match(r.stderr, /crossbuild-essential-s390x/);
    assert.match(r.stderr, /CC_linux_s390x/);
    assert.doesNotMatch(r.stderr, /linux\/amd64 \(/, "amd64 has its compiler");
    assert.equal(existsSync(out), false);
  });

  it("a compiler named with --cc that does not exist is said, with the platform", async () => {
    const r = await polyarch(
      [
        "build",
        src,
        "--cgo",
        "--cc",
        "linux/arm64=/nonexistent/aarch64-gcc",
        "-p",
        "linux/arm64",
        "-o",
        `oci:${path.join(work, "bad-cc")}`,
      ],
      { env: env() },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /linux\/arm64 \(\/nonexistent\/aarch64-gcc was named but cannot be run\)/);
  });

  it("a dynamically linked binary on a base without glibc (scratch) is refused, naming the loader it needs; nothing is written", async () => {
    const out = path.join(work, "no-libc");
    const r = await polyarch(["build", src, "--cgo", "dynamic", "-p", "linux/arm64", "-o", `oci:${out}`], {
      env: env(),
    });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /linux\/arm64 binary sqlite is linked dynamically \(cgo\) and needs its loader \/lib\/ld-linux-aarch64\.so\.1, libc\.so\.6, which the linux\/arm64 image of scratch does not have/,
    );
    assert.match(r.stderr, /static/);
    assert.equal(existsSync(out), false);
  });
});
