import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatPlatform,
  parsePlatform,
  parsePlatformList,
  platformMatches,
  toGoEnv,
} from "../src/platform/index.js";

describe("platform", () => {
  const cases: [string, string, Record<string, string>][] = [
    ["linux/amd64", "linux/amd64", { GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1" }],
    ["linux/amd64/v3", "linux/amd64/v3", { GOOS: "linux", GOARCH: "amd64", GOAMD64: "v3" }],
    ["linux/arm64", "linux/arm64", { GOOS: "linux", GOARCH: "arm64" }],
    ["linux/arm64/v8", "linux/arm64", { GOOS: "linux", GOARCH: "arm64" }],
    ["linux/arm", "linux/arm/v7", { GOOS: "linux", GOARCH: "arm", GOARM: "7" }],
    ["linux/arm/v6", "linux/arm/v6", { GOOS: "linux", GOARCH: "arm", GOARM: "6" }],
    ["linux/arm/v7", "linux/arm/v7", { GOOS: "linux", GOARCH: "arm", GOARM: "7" }],
    ["linux/arm/v5", "linux/arm/v5", { GOOS: "linux", GOARCH: "arm", GOARM: "5" }],
    ["linux/386", "linux/386", { GOOS: "linux", GOARCH: "386" }],
    ["linux/ppc64le", "linux/ppc64le", { GOOS: "linux", GOARCH: "ppc64le" }],
    ["linux/s390x", "linux/s390x", { GOOS: "linux", GOARCH: "s390x" }],
    ["linux/riscv64", "linux/riscv64", { GOOS: "linux", GOARCH: "riscv64" }],
    ["windows/amd64", "windows/amd64", { GOOS: "windows", GOARCH: "amd64", GOAMD64: "v1" }],
    ["darwin/arm64", "darwin/arm64", { GOOS: "darwin", GOARCH: "arm64" }],
    ["linux/aarch64", "linux/arm64", { GOOS: "linux", GOARCH: "arm64" }],
    ["linux/x86_64", "linux/amd64", { GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1" }],
    ["linux/armhf", "linux/arm/v7", { GOOS: "linux", GOARCH: "arm", GOARM: "7" }],
    ["linux/armel", "linux/arm/v6", { GOOS: "linux", GOARCH: "arm", GOARM: "6" }],
    ["Linux/AMD64", "linux/amd64", { GOOS: "linux", GOARCH: "amd64", GOAMD64: "v1" }],
  ];
  for (const [input, formatted, env] of cases) {
    it(`maps ${input}`, () => {
      const p = parsePlatform(input);
      assert.equal(formatPlatform(p), formatted);
      assert.deepEqual(toGoEnv(p), env);
    });
  }

  for (const bad of [
    "",
    "linux",
    "linux/arm64/v8/x",
    "linux/*",
    "linux/amd 64",
    "plan10/amd64",
    "linux/sparc",
    "linux/amd64/v9",
    "linux/386/v2",
    "linux/arm/v9",
  ]) {
    it(`refuses "${bad}" with a clear message`, () => {
      assert.throws(
        () => parsePlatform(bad),
        (e: Error & { code?: string; hint?: string }) => {
          assert.equal(e.code, "E_PLATFORM");
          assert.match(e.message, /invalid platform/);
          assert.ok(e.hint);
          return true;
        },
      );
    });
  }

  it("parses lists in buildx and Makefile spellings, dropping duplicates", () => {
    assert.deepEqual(
      parsePlatformList(["linux/amd64,linux/arm64", "linux/arm linux/arm/v7"]).map(formatPlatform),
      ["linux/amd64", "linux/arm64", "linux/arm/v7"],
    );
    assert.throws(() => parsePlatformList(""), /no platform/);
  });

  it("matches arm64 with arm64/v8 and arm with arm/v7", () => {
    assert.ok(platformMatches(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64" }));
    assert.ok(
      platformMatches(parsePlatform("linux/arm"), { os: "linux", architecture: "arm", variant: "v7" }),
    );
    assert.ok(
      !platformMatches(parsePlatform("linux/arm/v6"), { os: "linux", architecture: "arm", variant: "v7" }),
    );
  });
});
