import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { markUsed, TRIM_AFTER, trimCache } from "../src/layer/cache.js";

const DAY = 24 * 3600_000;
let root: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "polyarch-cache-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function put(dir: string, rel: string, ageMs: number, now: number): Promise<string> {
  const p = path.join(dir, rel);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, rel);
  const t = new Date(now - ageMs);
  await utimes(p, t, t);
  return p;
}

describe("build cache housekeeping", () => {
  it("removes entries unused for five days, keeps the rest and manifest lists, at most once a day", async () => {
    const dir = path.join(root, "c1");
    const now = Date.now();
    const old = TRIM_AFTER + DAY;
    const fresh = DAY;
    const gone = [
      await put(dir, "stat/aaaa", old, now),
      await put(dir, "layers/polyarch-gzip-1/bbbb", old, now),
      await put(dir, "layers/cccc", old, now), // an older encoder's flat index entry
      await put(dir, "blobs/sha256/dddd", old, now),
      await put(dir, "tmp/eeee-1-x", 2 * DAY, now),
      await put(dir, "trees/t1/records.json", old, now),
    ];
    // A layer goes whole when its records.json is unused; an interrupted one after a day.
    const treeFile = await put(dir, "trees/t1/files/0", fresh, now);
    const tmpTree = await put(dir, "trees/.tmp-t3-x/files/0", 2 * DAY, now);
    await utimes(path.dirname(path.dirname(tmpTree)), new Date(now - 2 * DAY), new Date(now - 2 * DAY));
    const binOld = await put(dir, "bin/pkg1/linux-arm64/server", old, now);
    await utimes(path.dirname(binOld), new Date(now - old), new Date(now - old));
    const kept = [
      await put(dir, "stat/ffff", fresh, now),
      await put(dir, "layers/polyarch-gzip-1/gggg", fresh, now),
      await put(dir, "blobs/sha256/hhhh", fresh, now),
      await put(dir, "tmp/iiii-1-x", 3600_000, now),
      await put(dir, "bin/pkg2/linux-amd64/server", fresh, now),
      await put(dir, "manifest-lists/example.com/app/list.json", old, now),
      await put(dir, "trees/t2/records.json", fresh, now),
    ];
    assert.equal(await trimCache(dir, now), gone.length + 2);
    assert.ok(!existsSync(treeFile) && !existsSync(tmpTree), "old layers go whole");
    for (const p of gone) assert.ok(!existsSync(p), `${p} removed`);
    assert.ok(!existsSync(path.join(dir, "bin", "pkg1")), "an emptied package directory goes too");
    for (const p of kept) assert.ok(existsSync(p), `${p} kept`);

    // Within a day of the last run nothing is even looked at.
    const later = await put(dir, "stat/jjjj", old, now);
    assert.equal(await trimCache(dir, now + 3600_000), undefined);
    assert.ok(existsSync(later));
    // A day on: the stat entry, and the temp file that is now over a day old.
    assert.equal(await trimCache(dir, now + DAY + 1000), 2);
    assert.ok(!existsSync(later));
    assert.ok(!existsSync(path.join(dir, "tmp", "iiii-1-x")));
  });

  it("marks an entry used at most once an hour", async () => {
    const dir = path.join(root, "c2");
    const now = Date.now();
    const p = await put(dir, "blobs/sha256/kkkk", 3 * DAY, now);
    await markUsed(p, now);
    const t1 = (await stat(p)).mtimeMs;
    assert.ok(Math.abs(t1 - now) < 1000, "refreshed");
    await utimes(p, new Date(now - 1000), new Date(now - 1000));
    await markUsed(p, now);
    assert.ok(Math.abs((await stat(p)).mtimeMs - (now - 1000)) < 5, "left alone within the hour");
  });
});

describe("image trees kept for native Dockerfile steps", () => {
  it("unpacks each layer once, then serves each caller its own tree replayed from the kept layers", async () => {
    const { TreeStore } = await import("../src/builder/dockerfile/tree.js");
    const { diffIdOf, layerTar } = await import("../src/layer/index.js");
    const { readFile } = await import("node:fs/promises");
    const layer = async (entries: Parameters<typeof layerTar>[0]) => {
      const chunks: Uint8Array[] = [];
      // Copied: a chunk is only valid until the next one is asked for.
      for await (const c of layerTar(entries, { mtime: 0, uid: 0, gid: 0 })) chunks.push(Buffer.from(c));
      const { diffId } = await diffIdOf(entries, { mtime: 0, uid: 0, gid: 0 });
      let opened = 0;
      return {
        mediaType: "application/vnd.oci.image.layer.v1.tar",
        digest: diffId,
        size: chunks.reduce((n, c) => n + c.length, 0),
        diffId,
        open: () => {
          opened++;
          return (async function* () {
            yield* chunks;
          })();
        },
        get opened() {
          return opened;
        },
      };
    };
    const l1 = await layer([
      { type: "dir", path: "etc", mode: 0o755 },
      {
        type: "file",
        path: "etc/passwd",
        mode: 0o644,
        source: { data: Buffer.from("root:x:0:0::/:/bin/sh\n") },
      },
      {
        type: "file",
        path: "bin/tool",
        mode: 0o755,
        uid: 1000,
        gid: 1000,
        source: { data: Buffer.from("#!tool") },
      },
      { type: "symlink", path: "bin/sh", target: "tool" },
    ]);
    const l2 = await layer([{ type: "whiteout", path: "bin/sh" }]);
    const dir = path.join(root, "trees");
    const a = await new TreeStore(dir).tree([l1, l2]);
    const b = await new TreeStore(dir).tree([l1, l2]);
    assert.equal(l1.opened, 1, "the second store read the kept layer, not the tar");
    assert.deepEqual([...a.nodes.keys()].sort(), ["", "bin", "bin/tool", "etc", "etc/passwd"]);
    assert.deepEqual([...b.nodes.keys()].sort(), [...a.nodes.keys()].sort());
    const tool = b.get("bin/tool")!;
    assert.deepEqual([tool.type, tool.mode, tool.uid, tool.gid], ["file", 0o755, 1000, 1000]);
    assert.equal(await readFile((tool.source as { file: string }).file, "utf8"), "#!tool");
    // Steps change their own copy only.
    a.remove("etc");
    assert.ok(b.get("etc/passwd"));
    assert.ok((await new TreeStore(dir).tree([l1, l2])).get("etc/passwd"));
    // Other layers are another tree (the symlink is there without the whiteout).
    assert.equal((await new TreeStore(dir).tree([l1])).get("bin/sh")?.target, "tool");
    assert.equal(l1.opened, 1, "a layer two images share is unpacked once");
  });
});
