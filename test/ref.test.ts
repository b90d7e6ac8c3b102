import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDigest } from "../src/digest/index.js";
import { formatReference, parseReference, validateTag } from "../src/ref/index.js";

const HEX = "a".repeat(64);

describe("references", () => {
  const ok: [string, string][] = [
    ["ubuntu", "docker.io/library/ubuntu"],
    ["ubuntu:22.04", "docker.io/library/ubuntu:22.04"],
    ["acme/api", "docker.io/acme/api"],
    ["ghcr.io/acme/api:1.2.3", "ghcr.io/acme/api:1.2.3"],
    ["localhost:5000/app", "localhost:5000/app"],
    ["127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"],
    [`reg.example/x@sha256:${HEX}`, `reg.example/x@sha256:${HEX}`],
    [`reg.example/x:t@sha256:${HEX}`, `reg.example/x:t@sha256:${HEX}`],
    ["index.docker.io/library/alpine", "docker.io/library/alpine"],
  ];
  for (const [input, want] of ok)
    it(`normalises ${input}`, () => assert.equal(formatReference(parseReference(input)), want));

  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["white space", /white space/],
    ["Foo/bar", /lowercase/],
    ["b@char/image", /digest/],
    ["library/ubuntu:", /valid tag/],
    ["x:c@n'tuse", /digest|tag/],
    ["gcr?com/x", /repository path component|registry/],
    [`x@sha256:${"a".repeat(63)}`, /64/],
    [`x@unknown:abc123`, /sha256/],
    [`${"a".repeat(250)}.io/${"b".repeat(10)}`, /255/],
  ];
  for (const [input, re] of bad) {
    it(`refuses "${input.slice(0, 40)}"`, () => assert.throws(() => parseReference(input), re));
  }

  it("validates tags", () => {
    assert.equal(validateTag("v1.2.3"), "v1.2.3");
    assert.equal(validateTag("main_3f2a-dirty"), "main_3f2a-dirty");
    for (const t of ["", "-x", ".x", "a/b", "white space", "c@n't", "x".repeat(129)]) {
      assert.throws(
        () => validateTag(t),
        (e: Error & { code?: string }) => e.code === "E_TAG",
      );
    }
  });

  it("validates digests", () => {
    assert.equal(parseDigest(`sha256:${HEX}`), `sha256:${HEX}`);
    for (const d of [
      `sha256:${HEX.toUpperCase()}`,
      "sha256:d34db33f",
      `md5:${HEX}`,
      `sha256:${":".repeat(64)}`,
      `sha512:${HEX}`,
    ]) {
      assert.throws(() => parseDigest(d), /not a digest/);
    }
  });
});
