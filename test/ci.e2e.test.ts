/**
 * The generated CI configuration, executed: the split build's per-platform jobs and its merge
 * job run here (their shell lines, with polyarch pointing at this checkout) against the real
 * registry, and the merged index must hold every platform. Also `polyarch info`.
 */
import assert from "node:assert/strict";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun, run } from "../src/testing/tools.js";
import { BIN, cleanup, gitRepo, polyarch, ROOT, tempDir } from "./_fixture.js";

let work: string;
let repo: string;
let reg: RunningRegistry;

before(async () => {
  work = await tempDir("ci");
  reg = await startRegistry();
  repo = path.join(work, "repo");
  await cp(path.join(ROOT, "examples", "hello"), path.join(repo, "hello"), { recursive: true });
  // A Dockerfile image beside the Go one: the generated jobs build both.
  await mkdir(path.join(repo, "site", "static"), { recursive: true });
  await writeFile(path.join(repo, "site", "static", "index.html"), "<p>site</p>\n");
  await writeFile(path.join(repo, "site", "Dockerfile"), "FROM scratch\nCOPY static/ /srv/\n");
  await writeFile(
    path.join(repo, "polyarch.yaml"),
    `images:\n  - name: hello\n    dir: hello\n  - name: site\n    dir: site\n    dockerfile: Dockerfile\nplatforms: [linux/amd64, linux/arm64, linux/arm/v7]\ndestination: { registry: ${reg.host}, repository: acme }\ntags: [commit-short, latest]\n`,
  );
  const git = await gitRepo(repo);
  await git("add", ".");
  await git("commit", "-q", "-m", "one");
});
after(async () => {
  await reg.stop();
  await cleanup(work);
});

describe("polyarch ci", () => {
  it("writes a GitHub workflow (plain and split) that parses, and refuses to overwrite", async () => {
    const r = await polyarch(["ci", "github"], { cwd: repo });
    assert.equal(r.code, 0, r.stderr);
    const wf = parse(await readFile(path.join(repo, ".github/workflows/polyarch.yml"), "utf8")) as {
      jobs: Record<string, { steps: { run?: string; uses?: string; with?: Record<string, string> }[] }>;
    };
    const steps = wf.jobs["publish"]!.steps;
    assert.ok(steps.some((s) => s.run?.endsWith("polyarch run")));
    // GOCACHE (setup-go) and polyarch's layer cache are both kept between runs, before the run.
    const cacheAt = steps.findIndex(
      (s) => s.uses?.startsWith("actions/cache@") && s.with?.["path"] === "~/.cache/polyarch",
    );
    assert.ok(cacheAt >= 0 && cacheAt < steps.findIndex((s) => s.run?.endsWith("polyarch run")));
    // setup-go keeps the module cache and GOCACHE, keyed by go.mod and go.sum.
    assert.ok(
      steps.some(
        (s) =>
          s.uses?.startsWith("actions/setup-go@") && s.with?.["cache-dependency-path"]?.includes("go.sum"),
      ),
    );
    const again = await polyarch(["ci", "github"], { cwd: repo });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    const split = parse((await polyarch(["ci", "github", "--split", "--stdout"], { cwd: repo })).stdout) as {
      jobs: { build: { strategy: { matrix: { include: { platform: string }[] } } } };
    };
    assert.deepEqual(
      split.jobs.build.strategy.matrix.include.map((m) => m.platform),
      ["linux/amd64", "linux/arm64", "linux/arm/v7"],
    );
  });

  it("a cgo image's CI installs the C toolchains for its platforms (packages this machine's apt knows); others install none", async () => {
    const plain = (await polyarch(["ci", "github", "--stdout"], { cwd: repo })).stdout;
    assert.doesNotMatch(plain, /C toolchains|crossbuild/, "no cgo image, no toolchains");
    const dir = path.join(work, "cgo-repo");
    await cp(path.join(ROOT, "examples", "sqlite"), path.join(dir, "db"), { recursive: true });
    await writeFile(
      path.join(dir, "polyarch.yaml"),
      "images:\n  - name: db\n    dir: db\n    cgo: true\nplatforms: [linux/amd64, linux/arm64, linux/arm/v7]\n",
    );
    type Step = { name?: string; run?: string; if?: string };
    const gh = parse((await polyarch(["ci", "github", "--stdout"], { cwd: dir })).stdout) as {
      jobs: { publish: { steps: Step[] } };
    };
    const steps = gh.jobs.publish.steps;
    const at = steps.findIndex((s) => s.name === "C toolchains (cgo)");
    assert.ok(at >= 0 && at < steps.findIndex((s) => s.run?.endsWith("polyarch run")), "before the run");
    const pkgs = /install -y -qq --no-install-recommends (.*)$/.exec(steps[at]!.run!)![1]!.split(" ");
    assert.deepEqual(pkgs, ["crossbuild-essential-arm64", "crossbuild-essential-armhf", "gcc", "libc6-dev"]);
    // Each is a package Debian has (asked of this machine's apt).
    for (const p of pkgs)
      assert.match(await mustRun("apt-cache", ["policy", p]), /Candidate: (?!\(none\))/, p);
    // Split: each platform's job installs what its own runner lacks.
    const split = parse((await polyarch(["ci", "github", "--split", "--stdout"], { cwd: dir })).stdout) as {
      jobs: {
        build: {
          strategy: { matrix: { include: { platform: string; runner: string; toolchains?: string }[] } };
        };
      };
    };
    const byPlatform = Object.fromEntries(
      split.jobs.build.strategy.matrix.include.map((m) => [
        m.platform,
        `${m.runner}: ${m.toolchains?.split("recommends ")[1]}`,
      ]),
    );
    assert.deepEqual(byPlatform, {
      "linux/amd64": "ubuntu-24.04: gcc libc6-dev",
      "linux/arm64": "ubuntu-24.04-arm: gcc libc6-dev",
      "linux/arm/v7": "ubuntu-24.04-arm: crossbuild-essential-armhf",
    });
    const gl = parse((await polyarch(["ci", "gitlab", "--stdout"], { cwd: dir })).stdout) as {
      publish: { before_script: string[] };
    };
    assert.match(
      gl.publish.before_script[0]!,
      /nodejs npm crossbuild-essential-arm64 crossbuild-essential-armhf gcc libc6-dev$/,
    );
  });

  it("the split pattern's jobs, run here, give one index with every platform", async () => {
    const ci = parse((await polyarch(["ci", "gitlab", "--split", "--stdout"], { cwd: repo })).stdout) as {
      variables: Record<string, string>;
      build: {
        parallel: { matrix: { PLATFORM: string[] }[] };
        script: string[];
        cache: { paths: string[] };
      };
      merge: { script: string[] };
    };
    // Every job keeps the module cache, GOCACHE and polyarch's cache in the project directory.
    assert.deepEqual(ci.build.cache.paths, [".go/pkg/mod/", ".go/cache/", ".polyarch/"]);
    assert.equal(ci.variables["GOMODCACHE"], "$CI_PROJECT_DIR/.go/pkg/mod");
    const sh = async (line: string, extra: Record<string, string>) => {
      const r = await run("sh", ["-c", line.replaceAll("npx --yes polyarch", `node ${BIN}`)], {
        cwd: repo,
        env: {
          ...process.env,
          REGISTRY: reg.host,
          REPOSITORY: "acme",
          POLYARCH_CACHE_DIR: path.join(work, "cache"),
          DOCKER_CONFIG: path.join(work, "docker"),
          ...extra,
        },
      });
      assert.equal(r.code, 0, `${line}\n${r.stderr}`);
    };
    // A job's script lines share one shell, as in GitLab.
    for (const platform of ci.build.parallel.matrix[0]!.PLATFORM)
      await sh(ci.build.script.join("\n"), { PLATFORM: platform });
    await sh(ci.merge.script.join("\n"), {});
    // The first test left a workflow file uncommitted, so the tags carry -dirty and latest is not set.
    const tag = (await polyarch(["tags"], { cwd: repo })).stdout.trim().split("\n")[0]!;
    assert.match(tag, /^[0-9a-f]{8}-dirty$/);
    for (const image of ["hello", "site"]) {
      const index = JSON.parse(
        await mustRun("skopeo", [
          "inspect",
          "--tls-verify=false",
          "--raw",
          `docker://${reg.host}/acme/${image}:${tag}`,
        ]),
      ) as { manifests: { platform: { architecture: string; variant?: string } }[] };
      assert.deepEqual(
        index.manifests
          .map((m) => [m.platform.architecture, m.platform.variant].filter(Boolean).join("/"))
          .sort(),
        ["amd64", "arm/v7", "arm64"],
        image,
      );
    }
  });
});

describe("polyarch info", () => {
  it("checks go, git, config and that the registry accepts a push; fails for an unreachable one", async () => {
    const ok = await polyarch(["info"], { cwd: repo, env: { DOCKER_CONFIG: path.join(work, "docker") } });
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, /^ok {4}go toolchain {17}go1\.\d+/m);
    assert.match(
      ok.stdout,
      new RegExp(
        `^ok {4}push ${reg.host.replace(/\./g, "\\.")}/acme/hello +registry reachable, credentials may push$`,
        "m",
      ),
    );
    const bad = await polyarch(["info", "--registry", "127.0.0.1:1"], {
      cwd: repo,
      env: { POLYARCH_RETRY_DELAYS_MS: "1,1" },
    });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^FAIL {2}push 127\.0\.0\.1:1\/acme\/hello .*connection refused/m);
    assert.match(bad.stderr, /2 checks failed/, "one push check per image");
  });
});
