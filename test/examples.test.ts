/** The examples' own Go test suites (go vet, go test), run as part of the project's tests. */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { run } from "../src/testing/tools.js";
import { ROOT } from "./_fixture.js";

describe("examples (go vet, go test)", () => {
  // notes' and sqlite's modules come from the module cache .ci/setup filled: nothing is
  // fetched here. sqlite is cgo (its C compiled at -O0: the tests are about behaviour).
  const env = {
    ...process.env,
    GOPROXY: "off",
    GOFLAGS: "-mod=mod",
    CGO_ENABLED: "1",
    CGO_CFLAGS: "-O0 -g0",
  };
  for (const ex of ["maintenance-proxy", "hello", "notes", "sqlite"]) {
    it(ex, async () => {
      const cwd = path.join(ROOT, "examples", ex);
      const vet = await run("go", ["vet", "./..."], { cwd, env });
      assert.equal(vet.code, 0, vet.stderr);
      const r = await run("go", ["test", "-count=1", "./..."], { cwd, env });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok\s/m);
    });
  }
});
