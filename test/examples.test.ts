/** The examples' own Go test suites (go vet, go test), run as part of the project's tests. */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { run } from "../src/testing/tools.js";
import { ROOT } from "./_fixture.js";

describe("examples (go vet, go test)", () => {
  // notes' modules come from the module cache .ci/setup filled: nothing is fetched here.
  const env = { ...process.env, GOPROXY: "off", GOFLAGS: "-mod=mod" };
  for (const ex of ["maintenance-proxy", "hello", "notes"]) {
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
