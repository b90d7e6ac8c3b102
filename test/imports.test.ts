/** Dependencies point down: cli → build/publish → image/layer/layout → manifest/digest/platform/ref. */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { it } from "node:test";
import { ROOT } from "./_fixture.js";

const LEVEL: Record<string, number> = {
  "errors.ts": 0,
  util: 0,
  ref: 1,
  platform: 1,
  digest: 1,
  git: 1,
  manifest: 2,
  image: 3,
  layer: 3,
  layout: 4,
  registry: 4,
  builder: 5,
  publish: 5,
  copy: 5,
  tags: 5,
  config: 6,
  orchestrate: 6,
  pipeline: 7,
  testing: 7,
  server: 8,
  cli: 9,
  "index.ts": 10,
};

it("no module imports one above it, and only cli/ and config/ read the environment", async () => {
  const src = path.join(ROOT, "src");
  const files = (await readdir(src, { recursive: true })).filter((f) => f.endsWith(".ts"));
  const problems: string[] = [];
  for (const f of files) {
    const top = f.split(path.sep)[0]!;
    const text = await readFile(path.join(src, f), "utf8");
    for (const m of text.matchAll(/from "(\.\.?\/[^"]+)"/g)) {
      const target = path
        .relative(src, path.resolve(path.dirname(path.join(src, f)), m[1]!))
        .split(path.sep)[0]!
        .replace(/\.js$/, ".ts");
      const a = LEVEL[top];
      const b = LEVEL[target];
      assert.ok(a !== undefined && b !== undefined, `unknown folder ${top} or ${target}`);
      if (b > a) problems.push(`${f} imports ${m[1]}`);
    }
    if (!["cli", "config", "testing"].includes(top) && /process\.env/.test(text))
      problems.push(`${f} reads process.env`);
  }
  assert.deepEqual(problems, []);
});
