import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type GitInfo, readGit, stripCredentials } from "../src/git/index.js";
import { expandTags, platformTag, sanitizeTag, semverOf } from "../src/tags/index.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, tempDir } from "./_fixture.js";

const SHA = "3f2a1b9c4d5e6f708192a3b4c5d6e7f809112233";
const git = (over: Partial<GitInfo> = {}): GitInfo => ({
  commit: SHA,
  branch: "main",
  tags: [],
  dirty: false,
  commitTime: 1,
  remote: undefined,
  defaultBranch: "main",
  ...over,
});

describe("tag rules", () => {
  const cases: [string, Parameters<typeof expandTags>[0], Partial<GitInfo>, string[]][] = [
    [
      "defaults on main with a release tag",
      [{ type: "semver" }, { type: "commit-short" }, { type: "latest" }],
      { tags: ["v1.2.3"] },
      ["1.2.3", "1.2", "1", "3f2a1b9c", "latest"],
    ],
    [
      "a pre-release moves only its full version",
      [{ type: "semver" }],
      { tags: ["v2.0.0-rc.1"] },
      ["2.0.0-rc.1"],
    ],
    [
      "the highest of several version tags",
      [{ type: "semver" }],
      { tags: ["v1.0.0", "v1.10.0", "v1.9.9", "junk"] },
      ["1.10.0", "1.10", "1"],
    ],
    ["no version tag: semver gives nothing", [{ type: "semver" }, { type: "commit" }], {}, [SHA]],
    [
      "latest only on the default branch",
      [{ type: "latest" }, { type: "branch" }],
      { branch: "feature/x" },
      ["feature-x"],
    ],
    ["latest always when told", [{ type: "latest", always: true }], { branch: "dev" }, ["latest"]],
    ["commit-short length", [{ type: "commit-short", length: 12 }], {}, [SHA.slice(0, 12)]],
    [
      "prefix and suffix",
      [
        { type: "commit-short", length: 7, prefix: "sha-" },
        { type: "raw", value: "stable", suffix: "-alpine" },
      ],
      {},
      ["sha-3f2a1b9", "stable-alpine"],
    ],
    [
      "a dirty tree marks tags and never gets latest",
      [{ type: "commit-short" }, { type: "latest" }],
      { dirty: true },
      ["3f2a1b9c-dirty"],
    ],
    [
      "branch names are sanitised",
      [{ type: "branch" }],
      { branch: "release/2024.1+hotfix" },
      ["release-2024.1-hotfix"],
    ],
    [
      "duplicates collapse",
      [
        { type: "raw", value: "x" },
        { type: "raw", value: "x" },
      ],
      {},
      ["x"],
    ],
  ];
  for (const [name, rules, g, want] of cases)
    it(name, () => assert.deepEqual(expandTags(rules, git(g)), want));

  it("refuses a rule that yields an invalid tag, and semver outside a tagged commit when required", () => {
    assert.equal(
      expandTags([{ type: "raw", value: "x".repeat(200) }], git())[0]!.length,
      128,
      "long values are cut to 128",
    );
    assert.throws(() => expandTags([{ type: "raw", value: "---" }], git()), /not a valid tag/);
    assert.throws(
      () => expandTags([{ type: "semver" }], git(), { requireSemver: true }),
      /needs a version tag like v1\.2\.3/,
    );
    assert.throws(() => expandTags([{ type: "commit-short", length: 2 }], git()), /out of range/);
  });

  it("sanitises and suffixes like the seeds do", () => {
    assert.equal(sanitizeTag("-feat/x y"), "feat-x-y");
    assert.deepEqual(semverOf(["v0.1.0", "1.0.0-beta"]), {
      version: "1.0.0-beta",
      major: "1",
      minor: "1.0",
      pre: true,
    });
    assert.equal(platformTag("latest", { os: "linux", architecture: "arm64" }, "arch"), "latest-arm64");
    assert.equal(
      platformTag("v1", { os: "linux", architecture: "arm", variant: "v7" }, "os-arch"),
      "v1-linux-arm-v7",
    );
  });
});

describe("git metadata from a real checkout", () => {
  let dir: string;
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: "t",
    GIT_AUTHOR_EMAIL: "t@example.com",
    GIT_COMMITTER_NAME: "t",
    GIT_COMMITTER_EMAIL: "t@example.com",
    GIT_COMMITTER_DATE: "@1700000000 +0000",
    GIT_AUTHOR_DATE: "@1700000000 +0000",
  };
  before(async () => {
    dir = await tempDir("git");
    await mustRun("git", ["init", "-q", "-b", "main", dir], { env });
    await writeFile(path.join(dir, "a.txt"), "a");
    await mustRun("git", ["-C", dir, "add", "."], { env });
    await mustRun("git", ["-C", dir, "commit", "-q", "-m", "one"], { env });
    await mustRun("git", ["-C", dir, "tag", "v1.4.0"], { env });
    await mustRun(
      "git",
      ["-C", dir, "remote", "add", "origin", "https://user:secret@git.example/acme/app.git"],
      { env },
    );
  });
  after(() => cleanup(dir));

  it("reads commit, branch, tags, time and a remote without credentials", async () => {
    const g = await readGit(dir, { env });
    assert.match(g.commit, /^[0-9a-f]{40}$/);
    assert.equal(g.branch, "main");
    assert.deepEqual(g.tags, ["v1.4.0"]);
    assert.equal(g.dirty, false);
    assert.equal(g.commitTime, 1700000000);
    assert.equal(g.remote, "https://git.example/acme/app.git");
    assert.equal(g.defaultBranch, "main");
    assert.deepEqual(expandTags([{ type: "semver" }, { type: "latest" }], g), [
      "1.4.0",
      "1.4",
      "1",
      "latest",
    ]);
  });

  it("sees a dirty tree and a detached HEAD", async () => {
    await writeFile(path.join(dir, "a.txt"), "changed");
    const dirty = await readGit(dir, { env });
    assert.equal(dirty.dirty, true);
    await mustRun("git", ["-C", dir, "checkout", "-q", "--", "a.txt"], { env });
    await mustRun("git", ["-C", dir, "checkout", "-q", "--detach"], { env });
    const detached = await readGit(dir, { env, branchHint: "main" });
    assert.equal(detached.branch, "main", "CI's branch variable stands in for a detached HEAD");
    assert.equal((await readGit(dir, { env })).branch, undefined);
  });

  it("refuses a directory outside git", async () => {
    const plain = await tempDir("nogit");
    try {
      await assert.rejects(readGit(plain, { env }), /is not a git checkout/);
    } finally {
      await cleanup(plain);
    }
  });

  it("strips credentials from URLs", () => {
    assert.equal(stripCredentials("https://tok:x-oauth@github.com/a/b"), "https://github.com/a/b");
    assert.equal(stripCredentials("git@github.com:a/b.git"), "git@github.com:a/b.git");
  });
});
