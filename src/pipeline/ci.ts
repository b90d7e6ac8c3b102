/**
 * CI configuration that runs the pipeline. Plain: one job, `polyarch run`. Split: one job per
 * platform building on its own runner and pushing under a per-commit, per-platform tag, then
 * a merge job that joins them into one list per release tag (`polyarch manifest`) — the
 * "native runner per platform, then merge" pattern, on any CI.
 */
import { stringify as yamlStringify } from "yaml";

// No anchors (not every CI reads them) and no folded lines (commands stay readable).
const stringify = (v: unknown) => yamlStringify(v, { aliasDuplicateObjects: false, lineWidth: 0 });
import { formatPlatform, type Platform } from "../platform/index.js";
import type { ResolvedConfig } from "../config/index.js";
import { cToolchainPackages } from "../builder/go/cgo.js";

/** The platforms of the images that build with cgo: their C compilers must be installed. */
function cgoPlatforms(c: ResolvedConfig): Platform[] {
  return c.images.filter((im) => im.cgo).flatMap((im) => im.platforms.value);
}

/** The apt-get line (with sudo, as on GitHub's runners) that installs the C toolchains a cgo build needs, or undefined. */
function aptToolchains(platforms: Platform[], hostArch: string): string | undefined {
  const pkgs = cToolchainPackages(platforms, hostArch);
  return pkgs.length
    ? `sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends ${pkgs.join(" ")}`
    : undefined;
}

const RUNNER: Record<string, string> = {
  amd64: "ubuntu-24.04",
  "386": "ubuntu-24.04",
  arm64: "ubuntu-24.04-arm",
  arm: "ubuntu-24.04-arm",
};

function platformSlug(p: string): string {
  return p.replace(/^linux\//, "").replaceAll("/", "-");
}

export function githubWorkflow(c: ResolvedConfig, split: boolean, polyarch = "npx --yes polyarch"): string {
  const env: Record<string, string> = {
    REGISTRY: c.registry.value ?? "ghcr.io",
    REPOSITORY: c.repository.value ?? "${{ github.repository_owner }}",
  };
  const setup = [
    { uses: "actions/checkout@v4", with: { "fetch-depth": 0 } },
    // setup-go keeps GOCACHE and the module cache between runs, keyed by go.mod and go.sum
    // (a stdlib-only module has no go.sum; go.mod alone then keys it).
    {
      uses: "actions/setup-go@v5",
      with: { "go-version": "stable", "cache-dependency-path": "**/go.mod\n**/go.sum" },
    },
    { uses: "actions/setup-node@v4", with: { "node-version": 20 } },
    {
      // polyarch's layer cache next to GOCACHE: unchanged binaries reuse their compressed layers.
      // It trims itself (entries unused for five days), so restoring the newest one is enough.
      name: "polyarch cache",
      uses: "actions/cache@v4",
      with: {
        path: "~/.cache/polyarch",
        key: "polyarch-${{ runner.os }}-${{ runner.arch }}-${{ github.sha }}",
        "restore-keys": "polyarch-${{ runner.os }}-${{ runner.arch }}-",
      },
    },
    {
      name: "Log in",
      run: `echo "\${{ secrets.REGISTRY_PASSWORD || secrets.GITHUB_TOKEN }}" | ${polyarch} login "$REGISTRY" -u "\${{ secrets.REGISTRY_USER || github.actor }}" --password-stdin`,
    },
  ];
  const on = { push: { branches: ["main"], tags: ["v*"] }, workflow_dispatch: {} };
  // cgo images: the C compilers for their platforms (Debian's cross toolchains).
  const cgo = cgoPlatforms(c);
  const cgoLine = aptToolchains(cgo, "amd64");
  if (!split) {
    return stringify({
      name: "polyarch",
      on,
      permissions: { contents: "read", packages: "write" },
      env,
      jobs: {
        publish: {
          "runs-on": "ubuntu-latest",
          steps: [
            ...setup,
            ...(cgoLine ? [{ name: "C toolchains (cgo)", run: cgoLine }] : []),
            { name: "Info", run: `${polyarch} info` },
            { name: "Run", id: "run", run: `${polyarch} run` },
          ],
        },
      },
    });
  }
  const platforms = c.platforms.value.map(formatPlatform);
  const jobs: Record<string, unknown> = {
    test: {
      "runs-on": "ubuntu-latest",
      steps: [...setup.slice(0, 3), { run: `${polyarch} run --stages lint,test` }],
    },
    build: {
      needs: "test",
      strategy: {
        "fail-fast": true,
        matrix: {
          include: platforms.map((p) => {
            const runner = RUNNER[p.split("/")[1]!] ?? "ubuntu-24.04";
            const line = aptToolchains(
              cgo.filter((q) => formatPlatform(q) === p),
              runner.endsWith("-arm") ? "arm64" : "amd64",
            );
            return { platform: p, slug: platformSlug(p), runner, ...(line ? { toolchains: line } : {}) };
          }),
        },
      },
      "runs-on": "${{ matrix.runner }}",
      steps: [
        ...setup,
        ...(cgo.length
          ? [{ name: "C toolchains (cgo)", if: "matrix.toolchains", run: "${{ matrix.toolchains }}" }]
          : []),
        {
          name: "Build and push ${{ matrix.platform }}",
          run: `${polyarch} run --stages build,publish -p "\${{ matrix.platform }}" --repository "$REPOSITORY/by-platform" --tag-suffix "-\${{ matrix.slug }}"`,
        },
      ],
    },
    merge: {
      needs: "build",
      "runs-on": "ubuntu-latest",
      steps: [
        ...setup,
        {
          name: "Join the platform images under every tag",
          run: [
            "set -eu",
            `for image in ${c.images.map((i) => i.name).join(" ")}; do`,
            `  for tag in $(${polyarch} tags); do`,
            `    ${polyarch} manifest create "$REGISTRY/$REPOSITORY/$image:$tag" ${platforms.map((p) => `"$REGISTRY/$REPOSITORY/by-platform/$image:$tag-${platformSlug(p)}"`).join(" ")}`,
            `    ${polyarch} manifest push --purge "$REGISTRY/$REPOSITORY/$image:$tag"`,
            "  done",
            "done",
          ].join("\n"),
        },
      ],
    },
  };
  return stringify({
    name: "polyarch (split per platform)",
    on,
    permissions: { contents: "read", packages: "write" },
    env,
    jobs,
  });
}

export function gitlabCi(c: ResolvedConfig, split: boolean, polyarch = "npx --yes polyarch"): string {
  const login = `echo "$CI_REGISTRY_PASSWORD" | ${polyarch} login "$CI_REGISTRY" -u "$CI_REGISTRY_USER" --password-stdin`;
  // The module cache, GOCACHE and polyarch's layer cache live in the project directory, the
  // only place GitLab caches from; every job restores and saves them.
  const cToolchains = cToolchainPackages(cgoPlatforms(c), "amd64");
  const base = {
    image: "golang:1.23-bookworm",
    before_script: [
      `apt-get update -qq && apt-get install -y -qq nodejs npm${cToolchains.length ? ` ${cToolchains.join(" ")}` : ""}`,
      login,
    ],
    cache: { key: "polyarch-$CI_COMMIT_REF_SLUG", paths: [".go/pkg/mod/", ".go/cache/", ".polyarch/"] },
  };
  const variables = {
    REGISTRY: c.registry.value ?? "$CI_REGISTRY",
    REPOSITORY: c.repository.value ?? "$CI_PROJECT_PATH",
    GOMODCACHE: "$CI_PROJECT_DIR/.go/pkg/mod",
    GOCACHE: "$CI_PROJECT_DIR/.go/cache",
    POLYARCH_CACHE_DIR: "$CI_PROJECT_DIR/.polyarch",
  };
  if (!split)
    return stringify({
      variables,
      stages: ["publish"],
      publish: { ...base, stage: "publish", script: [`${polyarch} info`, `${polyarch} run`] },
    });
  const platforms = c.platforms.value.map(formatPlatform);
  return stringify({
    variables,
    stages: ["test", "build", "merge"],
    test: { ...base, stage: "test", script: [`${polyarch} run --stages lint,test`] },
    build: {
      ...base,
      stage: "build",
      parallel: { matrix: [{ PLATFORM: platforms }] },
      script: [
        'SLUG=$(echo "${PLATFORM#linux/}" | tr / -)',
        `${polyarch} run --stages build,publish -p "$PLATFORM" --repository "$REPOSITORY/by-platform" --tag-suffix "-$SLUG"`,
      ],
    },
    merge: {
      ...base,
      stage: "merge",
      script: [
        `for image in ${c.images.map((i) => i.name).join(" ")}; do for tag in $(${polyarch} tags); do ${polyarch} manifest create "$REGISTRY/$REPOSITORY/$image:$tag" ${platforms.map((p) => `"$REGISTRY/$REPOSITORY/by-platform/$image:$tag-${platformSlug(p)}"`).join(" ")} && ${polyarch} manifest push --purge "$REGISTRY/$REPOSITORY/$image:$tag"; done; done`,
      ],
    },
  });
}
