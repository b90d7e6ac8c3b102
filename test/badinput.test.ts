/** Bad input: one clear sentence, a non-zero exit, and the existing layout untouched. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, gitExample, polyarch, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let out: string;
let cache: string;

/** A hash of every file name and content under dir: "untouched" means this is unchanged. */
async function treeHash(dir: string): Promise<string> {
  const h = createHash("sha256");
  const walk = async (d: string) => {
    for (const n of (await readdir(d)).sort()) {
      const p = path.join(d, n);
      const st = await stat(p);
      h.update(`${path.relative(dir, p)}\0`);
      if (st.isDirectory()) await walk(p);
      else h.update(await readFile(p));
    }
  };
  await walk(dir);
  return h.digest("hex");
}

before(async () => {
  work = await tempDir("bad");
  cache = path.join(work, "cache");
  src = await gitExample("hello", path.join(work, "src"));
  out = path.join(work, "out");
  const r = await polyarch(["build", src, "-p", "linux/amd64", "-o", `oci:${out}`], {
    env: { POLYARCH_CACHE_DIR: cache },
  });
  assert.equal(r.code, 0, r.stderr);
});
after(() => cleanup(work));

async function expectFailure(
  args: string[],
  message: RegExp,
  env: Record<string, string> = {},
): Promise<string> {
  const before = await treeHash(out);
  const r = await polyarch(args, { env: { POLYARCH_CACHE_DIR: cache, ...env } });
  assert.notEqual(r.code, 0, `expected failure, got: ${r.stdout}`);
  assert.match(r.stderr, message);
  assert.match(
    r.stderr,
    /^polyarch: error: .+\n(?:.*\n)* {2}hint: .+\n$/m,
    "one error sentence (then any compiler output) and a hint",
  );
  assert.doesNotMatch(r.stderr, /\n\s+at .+\(.+:\d+:\d+\)/, "no stack trace");
  assert.doesNotMatch(
    r.stderr,
    /internal error|Unhandled 'error' event/,
    "never an internal error (issue 8)",
  );
  assert.equal(r.stdout, "");
  assert.equal(await treeHash(out), before, "the existing layout is untouched");
  return r.stderr;
}

describe("bad input", () => {
  it("an unknown platform", async () => {
    await expectFailure(
      ["build", src, "-p", "linux/sparc", "-o", `oci:${out}`],
      /invalid platform "linux\/sparc": unknown architecture "sparc"/,
    );
  });
  it("a malformed platform", async () => {
    await expectFailure(
      ["build", src, "-p", "linux/arm64/v8/x", "-o", `oci:${out}`],
      /invalid platform .*expected os\/arch/,
    );
  });
  it("a platform Go cannot target", async () => {
    await expectFailure(
      ["build", src, "-p", "ios/386", "-o", `oci:${out}`],
      /cannot cross-compile for ios\/386/,
    );
  });
  it("an illegal tag", async () => {
    await expectFailure(
      ["build", src, "-p", "linux/amd64", "-t", "bad tag!", "-o", `oci:${out}`],
      /invalid tag "bad tag!"/,
    );
  });
  it("a malformed SOURCE_DATE_EPOCH", async () => {
    await expectFailure(
      ["build", src, "-o", `oci:${out}`],
      /SOURCE_DATE_EPOCH="1\.5" is not a whole number/,
      { SOURCE_DATE_EPOCH: "1.5" },
    );
  });

  it("a directory with no main package", async () => {
    const lib = path.join(work, "lib");
    await mkdir(lib, { recursive: true });
    await writeFile(path.join(lib, "go.mod"), "module example.com/lib\n\ngo 1.22\n");
    await writeFile(path.join(lib, "lib.go"), "package lib\n\nfunc X() int { return 1 }\n");
    await expectFailure(
      ["build", lib, "-p", "linux/amd64", "-o", `oci:${out}`],
      /holds package lib, not a main package/,
    );
    const empty = path.join(work, "empty");
    await mkdir(empty, { recursive: true });
    await expectFailure(
      ["build", empty, "-p", "linux/amd64", "-o", `oci:${out}`],
      /no Go package to build at/,
    );
  });

  it("a compile error shows the compiler output for that platform", async () => {
    const broken = await gitExample("hello", path.join(work, "broken"));
    await writeFile(path.join(broken, "broken_arm64.go"), 'package main\n\nvar x int = "not an int"\n');
    const err = await expectFailure(
      ["build", broken, "-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`],
      /go build failed for linux\/arm64:/,
    );
    assert.match(err, /broken_arm64\.go:3:\d+: cannot use "not an int"/);
  });

  it("an unwritable output, and a non-layout directory", async () => {
    await expectFailure(
      ["build", src, "-p", "linux/amd64", "-o", `oci:${path.join(out, "index.json", "x")}`],
      /cannot write to .*index\.json is not a directory/,
    );
    const other = path.join(work, "other");
    await mkdir(other, { recursive: true });
    await writeFile(path.join(other, "notes.txt"), "mine");
    await expectFailure(
      ["build", src, "-p", "linux/amd64", "-o", `oci:${other}`],
      /not empty and is not an OCI image layout/,
    );
    assert.deepEqual(await readdir(other), ["notes.txt"]);
  });

  it("an unknown option is a usage error (exit 2)", async () => {
    const r = await polyarch(["build", "--frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--frobnicate'/);
  });

  it("inspect of a missing tag names the tags there", async () => {
    const r = await polyarch(["inspect", `oci:${out}:nope`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tag "nope" is not in .*\n {2}hint: Tags here: latest\./);
  });

  it("a failed build into a new directory leaves nothing behind", async () => {
    const broken = path.join(work, "broken");
    const fresh = path.join(work, "fresh", "layout");
    const r = await polyarch(["build", broken, "-p", "linux/arm64", "-o", `oci:${fresh}`], {
      env: { POLYARCH_CACHE_DIR: cache },
    });
    assert.equal(r.code, 1);
    await assert.rejects(stat(fresh));
  });
});
