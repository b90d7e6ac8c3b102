/**
 * polyarch run on throwaway git repositories against the real registry: which tags exist and
 * where they point (read with skopeo), dry run vs real run, a failing platform or test stage
 * leaving the previous latest untouched, GitHub Actions outputs.
 */
import assert from "node:assert/strict";
import { cp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { sha256 } from "../src/digest/index.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, gitRepo, polyarch, ROOT, tempDir } from "./_fixture.js";

let work: string;
let repo: string;
let reg: RunningRegistry;
let git: (...args: string[]) => Promise<string>;
const env = () => ({
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
  DOCKER_CONFIG: path.join(work, "docker"),
  POLYARCH_RETRY_DELAYS_MS: "10,10",
});
const tagsOf = async (name: string) =>
  (
    JSON.parse(
      await mustRun("skopeo", ["list-tags", "--tls-verify=false", `docker://${reg.host}/acme/${name}`]),
    ) as { Tags: string[] }
  ).Tags.sort();
const digestAt = async (name: string, tag: string) =>
  sha256(
    await mustRun("skopeo", [
      "inspect",
      "--tls-verify=false",
      "--raw",
      `docker://${reg.host}/acme/${name}:${tag}`,
    ]),
  );

before(async () => {
  work = await tempDir("run");
  reg = await startRegistry();
  repo = path.join(work, "repo");
  await cp(path.join(ROOT, "examples", "hello"), path.join(repo, "services", "hello"), { recursive: true });
  await writeFile(
    path.join(repo, "polyarch.yaml"),
    `images:
  - name: hello
    dir: services/hello
    ports: [8080]
    entrypoint: [/app/hello, --quiet]
    ldflags: "-X main.version={{version}}"
platforms: [linux/amd64, linux/arm64]
destination:
  registry: ${reg.host}
  repository: acme
tags:
  - semver
  - commit-short: { length: 8 }
  - latest
  - branch: { prefix: "br-" }
platformTags: arch
environments:
  dev: { repository: acme/dev }
`,
  );
  git = await gitRepo(repo);
  await git("add", ".");
  await git("commit", "-q", "-m", "first");
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

describe("polyarch run", () => {
  let firstLatest: string;

  it("on main: the dry run lists what the real run then publishes, and exactly those tags exist", async () => {
    await git("tag", "v0.9.0");
    const sha = (await git("rev-parse", "HEAD")).trim();
    const dry = await polyarch(["run", "--dry-run"], { cwd: repo, env: env() });
    assert.equal(dry.code, 0, dry.stderr);
    const planned = [...dry.stdout.matchAll(/^publish hello (?:linux\/\S+ )?→ \S+\/acme\/hello:(\S+)$/gm)]
      .map((m) => m[1]!)
      .sort();
    assert.deepEqual(
      await mustRun("skopeo", ["list-tags", "--tls-verify=false", `docker://${reg.host}/acme/hello`]).catch(
        () => "none",
      ),
      "none",
      "the dry run published nothing",
    );
    const outFile = path.join(work, "gh-output");
    const sumFile = path.join(work, "gh-summary");
    await writeFile(outFile, "");
    const real = await polyarch(["run"], {
      cwd: repo,
      env: { ...env(), GITHUB_OUTPUT: outFile, GITHUB_STEP_SUMMARY: sumFile },
    });
    assert.equal(real.code, 0, real.stderr);
    const short = sha.slice(0, 8);
    const want = ["0.9.0", "0.9", "0", short, "latest", "br-main"];
    const withArch = [...want, ...want.flatMap((t) => [`${t}-amd64`, `${t}-arm64`])].sort();
    assert.deepEqual(planned, withArch);
    assert.deepEqual(await tagsOf("hello"), withArch);
    firstLatest = await digestAt("hello", "latest");
    for (const t of want) assert.equal(await digestAt("hello", t), firstLatest, `${t} points at the index`);
    const cfg = JSON.parse(
      await mustRun("skopeo", [
        "inspect",
        "--tls-verify=false",
        "--raw",
        `docker://${reg.host}/acme/hello:latest`,
      ]),
    ) as { annotations: Record<string, string> };
    assert.equal(cfg.annotations["org.opencontainers.image.revision"], sha);
    assert.equal(cfg.annotations["org.opencontainers.image.version"], "0.9.0");
    const gh = await readFile(outFile, "utf8");
    assert.match(gh, new RegExp(`^digest=${firstLatest}$`, "m"));
    assert.match(gh, /tags<<POLYARCH_EOF\n0\.9\.0\n0\.9\n0\n/);
    assert.match(await readFile(sumFile, "utf8"), /\| hello \| linux\/arm64 \| `sha256:/);
  });

  it("a failing platform publishes nothing and leaves latest where it was", async () => {
    await git("checkout", "-q", "-b", "feature/broken");
    await writeFile(
      path.join(repo, "services", "hello", "broken_arm64.go"),
      'package main\n\nvar broken int = "no"\n',
    );
    await git("add", ".");
    await git("commit", "-q", "-m", "break arm64");
    await git("checkout", "-q", "main");
    await git("merge", "-q", "--ff-only", "feature/broken");
    const r = await polyarch(["run", "--skip", "lint", "--skip", "test"], { cwd: repo, env: env() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /go build failed for linux\/arm64/);
    assert.equal(await digestAt("hello", "latest"), firstLatest);
    const sha = (await git("rev-parse", "HEAD")).trim();
    assert.ok(!(await tagsOf("hello")).includes(sha.slice(0, 8)), "no tag for the broken commit");
  });

  it("a failing test stage stops the run before anything is built", async () => {
    await rm(path.join(repo, "services", "hello", "broken_arm64.go"));
    await writeFile(
      path.join(repo, "services", "hello", "fail_test.go"),
      'package main\n\nimport "testing"\n\nfunc TestFails(t *testing.T) { t.Fatal("deliberate") }\n',
    );
    await git("add", ".");
    await git("commit", "-q", "-m", "failing test");
    const r = await polyarch(["run"], { cwd: repo, env: env() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /test failed for image hello: `go test \.\/\.\.\.` exited with 1/);
    assert.match(r.stderr, /deliberate/);
    assert.doesNotMatch(r.stderr, /compiled/);
    assert.equal(await digestAt("hello", "latest"), firstLatest);
  });

  it("an environment picks another repository; an unknown one is refused", async () => {
    await rm(path.join(repo, "services", "hello", "fail_test.go"));
    await git("add", ".");
    await git("commit", "-q", "-m", "fixed");
    const r = await polyarch(["run", "--skip", "lint", "--skip", "test"], {
      cwd: repo,
      env: { ...env(), POLYARCH_ENV: "dev" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${reg.host.replace(/\./g, "\\.")}/acme/dev/hello:latest@sha256:`));
    const bad = await polyarch(["run", "--env", "staging"], { cwd: repo, env: env() });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /unknown environment "staging" \(from flag\)\n {2}hint: polyarch\.yaml defines: dev\./,
    );
  });

  it("on a terminal shows a live view per image and platform; in CI plain timestamped lines", async () => {
    const cmd = `${process.execPath} ${path.join(ROOT, "bin", "polyarch.js")} run --skip lint --skip test`;
    const tty = await mustRun("script", ["-qec", cmd, "/dev/null"], {
      cwd: repo,
      env: { ...process.env, ...env(), CI: "" },
    });
    const ESC = String.fromCharCode(27);
    assert.ok(tty.includes(`${ESC}[2Kpolyarch run: `), "redrawn in place");
    for (const p of ["linux/amd64", "linux/arm64"]) assert.match(tty, new RegExp(`hello ${p} +done → `));
    assert.doesNotMatch(
      tty,
      /\] build hello linux\/amd64 compiled/,
      "no plain progress lines under the live view",
    );
    const ci = await polyarch(["run", "--skip", "lint", "--skip", "test"], {
      cwd: repo,
      env: { ...env(), CI: "true" },
    });
    assert.equal(ci.code, 0, ci.stderr);
    assert.match(ci.stderr, /^\[\d\d:\d\d:\d\d\] build hello linux\/amd64 compiled in/m);
    assert.ok(!ci.stderr.includes(`${ESC}[`), "no escape codes in CI");
  });

  it("semver as the only rule on an untagged commit is an error, before anything runs", async () => {
    const cfg = await readFile(path.join(repo, "polyarch.yaml"), "utf8");
    await writeFile(
      path.join(repo, "polyarch.yaml"),
      cfg.replace(/tags:\n(?: {2}- .*\n)+/, "tags:\n  - semver\n"),
    );
    const r = await polyarch(["run", "--dry-run"], { cwd: repo, env: env() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tag rule semver needs a version tag like v1\.2\.3/);
    await writeFile(path.join(repo, "polyarch.yaml"), cfg);
  });
});
