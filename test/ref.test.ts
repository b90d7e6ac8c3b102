import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDigest } from "../src/digest/index.js";
import {
  formatReference,
  parseReference,
  parseRegistryHost,
  redactUserinfo,
  validateTag,
} from "../src/ref/index.js";

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
    ["b@char/image", /user name or password/],
    ["library/ubuntu:", /valid tag/],
    ["x:c@n'tuse", /user name or password/],
    ["reg.io:99999/app", /99999 is not a port number/],
    ["gcr?com/x", /repository path component|registry/],
    [`x@sha256:${"a".repeat(63)}`, /64/],
    [`x@unknown:abc123`, /sha256/],
    [`${"a".repeat(250)}.io/${"b".repeat(10)}`, /255/],
  ];
  for (const [input, re] of bad) {
    it(`refuses "${input.slice(0, 40)}"`, () => assert.throws(() => parseReference(input), re));
  }

  it("never repeats credentials written into a reference or registry", () => {
    for (const input of [
      "robot:hunter2-secret@reg.example/app:1",
      "https://robot:hunter2-secret@reg.example/app",
      "hunter2-secret@reg.example/app",
    ]) {
      const e = (() => {
        try {
          parseReference(input);
        } catch (err) {
          return err as Error & { hint?: string };
        }
        return undefined;
      })();
      assert.ok(e, input);
      assert.match(e.message, /<redacted>@reg\.example/);
      assert.doesNotMatch(`${e.message} ${e.hint ?? ""} ${e.stack ?? ""}`, /hunter2|robot/);
      assert.throws(
        () => parseRegistryHost(input.replace(/\/app.*$/, "")),
        (err: Error) => {
          assert.doesNotMatch(err.message, /hunter2|robot/);
          return /user name or password/.test(err.message);
        },
      );
    }
    assert.equal(
      redactUserinfo("reg.example/app@sha256:" + "a".repeat(64)),
      "reg.example/app@sha256:" + "a".repeat(64),
    );
    assert.equal(redactUserinfo("app@sha256:" + "a".repeat(64)), "app@sha256:" + "a".repeat(64));
    assert.equal(parseRegistryHost("https://localhost:5000/"), "localhost:5000");
    assert.throws(() => parseRegistryHost("localhost:99999"), /99999 is not a port number/);
  });

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
