/** The examples' own Go test suites, run as part of the project's tests. */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { run } from "../src/testing/tools.js";
import { ROOT } from "./_fixture.js";

describe("examples (go vet, go test)", () => {
  for (const ex of ["maintenance-proxy", "hello"]) {
    it(ex, async () => {
      const cwd = path.join(ROOT, "examples", ex);
      const vet = await run("go", ["vet", "./..."], { cwd });
      assert.equal(vet.code, 0, vet.stderr);
      const r = await run("go", ["test", "-count=1", "./..."], { cwd });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok\s/m);
    });
  }
});
