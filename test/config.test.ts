import assert from "node:assert/strict";
import { cp, readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parsePolyarchFile, resolveConfig } from "../src/config/index.js";
import { formatPlatform } from "../src/platform/index.js";
import { cleanup, gitRepo, polyarch, ROOT, tempDir } from "./_fixture.js";

const base = `images:
  - name: api
    dir: cmd/api
    ports: [8080]
platforms: [linux/amd64, linux/arm64]
destination:
  registry: ghcr.io
  repository: acme
tags:
  - semver
  - commit-short: { length: 7, prefix: sha- }
  - latest: { always: true }
  - raw: stable
environments:
  dev: { repository: acme/dev }
  prod: { registry: registry.example, repository: acme/prod }
`;

describe("polyarch.yaml", () => {
  it("reads images, destination, tag rules and environments", () => {
    const f = parsePolyarchFile(base, "polyarch.yaml");
    assert.equal(f.images[0]!.name, "api");
    assert.deepEqual(f.tags, [
      { type: "semver" },
      { type: "commit-short", length: 7, prefix: "sha-" },
      { type: "latest", always: true },
      { type: "raw", value: "stable" },
    ]);
    assert.deepEqual(f.environments["prod"], { registry: "registry.example", repository: "acme/prod" });
    const withEntry = parsePolyarchFile(
      base.replace("    ports: [8080]", "    ports: [8080]\n    entrypoint: [/app/api, --serve]"),
      "polyarch.yaml",
    );
    assert.deepEqual(withEntry.images[0]!.entrypoint, ["/app/api", "--serve"]);
  });

  const bad: [string, string, RegExp][] = [
    [
      "an unknown key, with a suggestion",
      base.replace("platforms:", "platfroms:"),
      /^polyarch\.yaml:5: platfroms: unknown key "platfroms" \(did you mean "platforms"\?\)/,
    ],
    [
      "an unknown key inside an image",
      base.replace("    ports:", "    prots:"),
      /^polyarch\.yaml:4: images\[0\]\.prots: unknown key "prots" \(did you mean "ports"\?\)/,
    ],
    [
      "a wrong type",
      base.replace("  registry: ghcr.io", "  registry: [a, b]"),
      /^polyarch\.yaml:7: destination\.registry: expected a non-empty string/,
    ],
    [
      "an unknown tag rule",
      base.replace("  - semver", "  - calver"),
      /^polyarch\.yaml:10: tags\[0\]: unknown tag rule "calver"/,
    ],
    [
      "a bad commit-short length",
      base.replace("length: 7", "length: 99"),
      /^polyarch\.yaml:11: tags\[1\]\.commit-short\.length: expected a whole number from 4 to 40/,
    ],
    ["no images", "platforms: [linux/amd64]\n", /^polyarch\.yaml:1: images: list at least one image/],
    ["broken YAML", "images:\n  - name: [\n", /^polyarch\.yaml:\d+: not valid YAML/],
    [
      "an invalid image name",
      base.replace("name: api", "name: API"),
      /^polyarch\.yaml:2: images\[0\]\.name: "API" is not a valid repository name/,
    ],
  ];
  for (const [name, text, re] of bad) {
    it(`refuses ${name} with file, line and key`, () => {
      assert.throws(
        () => parsePolyarchFile(text, "polyarch.yaml"),
        (e: Error) => {
          assert.match(e.message, re);
          return true;
        },
      );
    });
  }

  it("mains: the first is the entrypoint, the rest go into the same image; main and mains together are refused", () => {
    const f = parsePolyarchFile("images:\n  - name: soda\n    mains: [., ./cmd/soda]\n", "polyarch.yaml");
    assert.equal(f.images[0]!.main, ".");
    assert.deepEqual(f.images[0]!.extraMains, ["./cmd/soda"]);
    assert.throws(
      () => parsePolyarchFile("images:\n  - name: x\n    main: .\n    mains: [.]\n", "polyarch.yaml"),
      /images\[0\]\.mains: give main or mains, not both/,
    );
  });

  it("debugInfo: a boolean for Go images, false unless set", () => {
    const resolve = (yaml: string) =>
      resolveConfig("/repo", parsePolyarchFile(yaml, "polyarch.yaml"), {}, {}).images[0]!.debugInfo;
    assert.equal(resolve("images:\n  - name: api\n"), false);
    assert.equal(resolve("images:\n  - name: api\n    debugInfo: true\n"), true);
    assert.throws(
      () => parsePolyarchFile("images:\n  - name: api\n    debugInfo: yes please\n", "polyarch.yaml"),
      /polyarch\.yaml:3: images\[0\]\.debugInfo: expected true or false, not "yes please"/,
    );
    assert.throws(
      () =>
        parsePolyarchFile(
          "images:\n  - name: web\n    dockerfile: Dockerfile\n    debugInfo: true\n",
          "polyarch.yaml",
        ),
      /images\[0\]\.debugInfo: debugInfo is for Go images/,
    );
  });

  it("cgo and cc: checked with line and key; cc needs cgo on; the file's cgo wins over CGO_ENABLED; cc keys are platforms", () => {
    assert.throws(
      () => parsePolyarchFile("images:\n  - name: db\n    cgo: maybe\n", "polyarch.yaml"),
      /polyarch\.yaml:3: images\[0\]\.cgo: expected true, false, static or dynamic, not "maybe"/,
    );
    assert.throws(
      () =>
        parsePolyarchFile(
          "images:\n  - name: web\n    dockerfile: Dockerfile\n    cgo: true\n",
          "polyarch.yaml",
        ),
      /images\[0\]\.cgo: cgo is for Go images/,
    );
    const resolve = (yaml: string, env: Record<string, string> = {}) =>
      resolveConfig("/repo", parsePolyarchFile(yaml, "polyarch.yaml"), {}, env).images[0]!.cgo;
    assert.deepEqual(resolve("images:\n  - name: db\n    cgo: static\n"), { link: "static" });
    assert.equal(resolve("images:\n  - name: db\n"), undefined);
    assert.deepEqual(resolve("images:\n  - name: db\n", { CGO_ENABLED: "1" }), {});
    assert.equal(resolve("images:\n  - name: db\n    cgo: false\n", { CGO_ENABLED: "1" }), undefined);
    assert.deepEqual(
      resolve(
        "images:\n  - name: db\n    cgo: true\n    cc: { linux/arm: arm-gcc, linux/arm64/v8: a64-gcc }\n",
      ),
      { cc: { "linux/arm": "arm-gcc", "linux/arm64": "a64-gcc" } },
    );
    assert.throws(
      () => resolve("images:\n  - name: db\n    cc: { linux/arm64: gcc }\n"),
      /images\.db\.cc names C compilers, but cgo is off/,
    );
    assert.throws(
      () => resolve("images:\n  - name: db\n    cgo: true\n    cc: { arm64: gcc }\n"),
      /images\.db\.cc "arm64" is not a platform/,
    );
  });

  it("platforms: all needs a base, and a Go image", () => {
    const resolve = (yaml: string) =>
      resolveConfig("/repo", parsePolyarchFile(yaml, "polyarch.yaml"), {}, {});
    const ok = resolve("images:\n  - name: a\n    base: oci:/b\nplatforms: all\n");
    assert.equal(ok.images[0]!.platforms.ofBase, true);
    assert.throws(
      () => resolve("images:\n  - name: a\n    platforms: all\n"),
      /platforms all \(from polyarch\.yaml\) builds every platform of an image's base, and image a has no base/,
    );
    assert.throws(
      () => resolve("images:\n  - name: w\n    dockerfile: Dockerfile\nplatforms: [all]\n"),
      /platforms all \(from polyarch\.yaml\) is for Go images on a base/,
    );
  });

  it("resolves with precedence flag > env var > environment > file > default, and says where from", () => {
    const f = parsePolyarchFile(base, "polyarch.yaml");
    const fileOnly = resolveConfig("/repo", f, {}, {});
    assert.equal(fileOnly.registry.value, "ghcr.io");
    assert.equal(fileOnly.registry.from, "polyarch.yaml");
    assert.equal(fileOnly.images[0]!.dir, "/repo/cmd/api");
    assert.equal(
      `${fileOnly.images[0]!.reference!.registry}/${fileOnly.images[0]!.reference!.repository}`,
      "ghcr.io/acme/api",
    );
    const prod = resolveConfig("/repo", f, {}, { POLYARCH_ENV: "prod" });
    assert.equal(prod.registry.value, "registry.example");
    assert.equal(prod.registry.from, "environment prod");
    assert.equal(prod.repository.value, "acme/prod");
    const env = resolveConfig(
      "/repo",
      f,
      { env: "dev" },
      { REPOSITORY: "other", PLATFORMS: "linux/s390x linux/ppc64le" },
    );
    assert.equal(env.repository.value, "other");
    assert.equal(env.repository.from, "env REPOSITORY");
    assert.deepEqual(env.platforms.value.map(formatPlatform), ["linux/s390x", "linux/ppc64le"]);
    assert.equal(env.platforms.from, "env PLATFORMS");
    const flag = resolveConfig(
      "/repo",
      f,
      { repository: "flagged", platform: ["linux/arm/v7"] },
      { REPOSITORY: "other", PLATFORMS: "linux/s390x" },
    );
    assert.equal(flag.repository.value, "flagged");
    assert.equal(flag.repository.from, "flag");
    assert.deepEqual(flag.images[0]!.platforms.value.map(formatPlatform), ["linux/arm/v7"]);
    assert.throws(
      () => resolveConfig("/repo", f, { env: "staging" }, {}),
      /unknown environment "staging" \(from flag\)[\s\S]*/,
    );
  });
});

describe("polyarch init, config and tags on a repository", () => {
  let dir: string;
  let git: (...args: string[]) => Promise<string>;
  before(async () => {
    dir = await tempDir("init");
    await cp(path.join(ROOT, "examples"), path.join(dir, "examples"), { recursive: true });
    git = await gitRepo(dir);
  });
  after(() => cleanup(dir));

  it("init finds the main packages and writes a file that loads; it will not overwrite", async () => {
    const r = await polyarch(["init"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const text = await readFile(path.join(dir, "polyarch.yaml"), "utf8");
    assert.match(text, /name: hello\n {4}dir: examples\/hello/);
    assert.match(text, /name: maintenance-proxy\n {4}dir: examples\/maintenance-proxy/);
    assert.match(text, /tags:\n {2}- semver\n {2}- commit-short: \{ length: 8 \}\n {2}- latest/);
    const again = await polyarch(["init"], { cwd: dir });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    const c = await polyarch(["config"], { cwd: dir, env: { REGISTRY: "localhost:5000" } });
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^registry\s+localhost:5000\s+env REGISTRY$/m);
  });

  it("tags prints semver, commit-short and latest for a tagged commit on main, -dirty when dirty", async () => {
    await git("add", ".");
    await git("commit", "-q", "-m", "one");
    await git("tag", "v3.1.4");
    const sha = (await git("rev-parse", "HEAD")).trim();
    const r = await polyarch(["tags"], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["3.1.4", "3.1", "3", sha.slice(0, 8), "latest"]);
    await cp(path.join(dir, "polyarch.yaml"), path.join(dir, "extra.yaml"));
    const dirty = await polyarch(["tags"], { cwd: dir });
    assert.deepEqual(dirty.stdout.trim().split("\n"), [
      "3.1.4-dirty",
      "3.1-dirty",
      "3-dirty",
      `${sha.slice(0, 8)}-dirty`,
    ]);
    assert.match(dirty.stderr, /uncommitted changes/);
  });
});
