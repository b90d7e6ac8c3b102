import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createGunzip } from "node:zlib";
import { extract } from "tar-stream";
import { sha256 } from "../src/digest/index.js";
import {
  cleanImagePath,
  diffIdOf,
  entriesFromDirectory,
  type LayerEntry,
  normalizeEntries,
  utf8Order,
  writeLayer,
} from "../src/layer/index.js";
import { noise } from "./_data.js";

/** Seeded data with runs mixed in, so it compresses like a binary does, not like noise. */
function random(seed: number, n: number): Buffer {
  const out = noise(seed, n);
  for (let i = 0; i < n; i++) if (i % 7 < 3) out[i] = 0;
  return out;
}

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  uname: string;
  gname: string;
  linkname: string | null;
  data: Buffer;
}

async function readTar(file: string): Promise<TarEntry[]> {
  const ex = extract();
  const out: TarEntry[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const h = entry.header;
      out.push({
        name: h.name,
        type: h.type ?? "",
        mode: h.mode ?? 0,
        uid: h.uid ?? -1,
        gid: h.gid ?? -1,
        mtime: (h.mtime?.getTime() ?? -1) / 1000,
        uname: h.uname ?? "",
        gname: h.gname ?? "",
        linkname: h.linkname ?? null,
        data: Buffer.concat(chunks),
      });
    }
  })();
  createReadStream(file).pipe(createGunzip()).pipe(ex);
  await done;
  return out;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "polyarch-layer-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const payload = random(42, 3 * 1024 * 1024 + 17);
const entries = (): LayerEntry[] => [
  { type: "file", path: "app/server", mode: 0o555, source: { data: payload } },
  { type: "file", path: "/app/data/b.txt", mode: 0o444, source: { data: Buffer.from("bee\n") } },
  { type: "file", path: "app/data/a.txt", mode: 0o444, source: { data: Buffer.from("ay\n") } },
  { type: "symlink", path: "app/current", target: "server" },
];
const opts = { mtime: 1700000000, uid: 0, gid: 0 };

describe("reproducible layers", () => {
  it("gives the same bytes for the same entries in any order, and a pinned golden digest", async () => {
    const a = await writeLayer(entries(), opts, path.join(dir, "a.tgz"));
    const b = await writeLayer(entries().reverse(), opts, path.join(dir, "b.tgz"));
    assert.deepEqual(await readFile(a.file), await readFile(b.file));
    assert.equal(a.digest, sha256(await readFile(a.file)));
    // Golden values: a change here means every polyarch digest changes (encoder, block size,
    // tar format). Only update them on purpose, with a release note.
    assert.equal((await diffIdOf(entries(), opts)).diffId, a.diffId);
  });

  it("pins the golden digests", async () => {
    const a = await writeLayer(entries(), opts, path.join(dir, "golden.tgz"));
    assert.deepEqual({ digest: a.digest, diffId: a.diffId, size: a.size }, GOLDEN);
  });

  it("the worker pool writes exactly the bytes writeLayer does, with any number of workers, and inline", async () => {
    const { LayerPool } = await import("../src/layer/pool.js");
    const want = await writeLayer(entries(), opts, path.join(dir, "seq.tgz"));
    const small: LayerEntry[] = [
      { type: "file", path: "a", mode: 0o644, source: { data: Buffer.from("a") } },
    ];
    const wantSmall = await writeLayer(small, opts, path.join(dir, "seq-small.tgz"));
    for (const workers of [1, 3]) {
      const pool = new LayerPool(workers, { inlineBytes: 0 });
      try {
        const [got, gotSmall] = await Promise.all([
          pool.writeLayer(entries(), opts, path.join(dir, `pool-${workers}.tgz`)),
          pool.writeLayer(small, opts, path.join(dir, `pool-small-${workers}.tgz`)),
        ]);
        assert.deepEqual(await readFile(got.file), await readFile(want.file), `${workers} workers`);
        assert.deepEqual({ ...got, file: "" }, { ...want, file: "" });
        assert.deepEqual(await readFile(gotSmall.file), await readFile(wantSmall.file));
        // Again on the same pool: segments now go out in buffers the workers gave back.
        const again = await pool.writeLayer(entries(), opts, path.join(dir, `pool-again-${workers}.tgz`));
        assert.deepEqual(
          await readFile(again.file),
          await readFile(want.file),
          `${workers} workers, reused buffers`,
        );
      } finally {
        await pool.close();
      }
    }
    // Small layers are compressed on the calling thread: the same bytes.
    const inline = new LayerPool(2);
    try {
      const got = await inline.writeLayer(entries(), opts, path.join(dir, "inline.tgz"));
      assert.deepEqual(await readFile(got.file), await readFile(want.file));
    } finally {
      await inline.close();
    }
  });

  it("writes a gzip header with mtime 0, no name and a fixed OS byte", async () => {
    const a = await writeLayer(entries(), opts, path.join(dir, "h.tgz"));
    const head = (await readFile(a.file)).subarray(0, 10);
    assert.equal(head[0], 0x1f);
    assert.equal(head[1], 0x8b);
    assert.equal(head[3], 0, "no FNAME/FEXTRA flags");
    assert.deepEqual([...head.subarray(4, 8)], [0, 0, 0, 0], "mtime 0");
    assert.equal(head[9], GOLDEN_OS_BYTE);
  });

  it("writes sorted entries with parents, uid/gid 0, fixed modes and SOURCE_DATE_EPOCH mtimes", async () => {
    const a = await writeLayer(entries(), opts, path.join(dir, "c.tgz"));
    const tar = await readTar(a.file);
    assert.deepEqual(
      tar.map((e) => e.name),
      ["app/", "app/current", "app/data/", "app/data/a.txt", "app/data/b.txt", "app/server"],
    );
    for (const e of tar) {
      assert.equal(e.uid, 0);
      assert.equal(e.gid, 0);
      assert.equal(e.uname, "");
      assert.equal(e.mtime, 1700000000);
    }
    const byName = Object.fromEntries(tar.map((e) => [e.name, e]));
    assert.equal(byName["app/"]!.mode, 0o755);
    assert.equal(byName["app/server"]!.mode, 0o555);
    assert.equal(byName["app/data/a.txt"]!.mode, 0o444);
    assert.equal(byName["app/current"]!.type, "symlink");
    assert.equal(byName["app/current"]!.linkname, "server");
    assert.deepEqual(byName["app/server"]!.data, payload);
  });

  it("changes digest when the mtime or owner changes", async () => {
    const a = await diffIdOf(entries(), opts);
    assert.notEqual((await diffIdOf(entries(), { ...opts, mtime: 0 })).diffId, a.diffId);
    assert.notEqual((await diffIdOf(entries(), { ...opts, uid: 65532, gid: 65532 })).diffId, a.diffId);
  });

  it("refuses paths that escape the root and duplicate entries", () => {
    for (const p of ["../x", "a/../../x", "\\x", "C:x", ""])
      assert.throws(() => cleanImagePath(p), /unsafe|empty/);
    assert.equal(cleanImagePath("/a//b/./c/"), "a/b/c");
    assert.throws(
      () =>
        normalizeEntries([
          { type: "file", path: "a", mode: 0o444, source: { data: Buffer.alloc(1) } },
          { type: "file", path: "/a", mode: 0o444, source: { data: Buffer.alloc(1) } },
        ]),
      /two entries/,
    );
    assert.throws(
      () =>
        normalizeEntries([
          { type: "file", path: "a", mode: 0o444, source: { data: Buffer.alloc(1) } },
          { type: "file", path: "a/b", mode: 0o444, source: { data: Buffer.alloc(1) } },
        ]),
      /both a directory/,
    );
  });

  it("orders paths by their UTF-8 bytes, astral characters after U+E000–U+FFFF", () => {
    const names = [
      "a",
      "ab",
      "a/b",
      "a-b",
      "é",
      "\uffff",
      "\ue000",
      "\ud7ff",
      "😀",
      "𝄞x",
      "z",
      "\u00ff",
      "A",
      "",
    ];
    for (const a of names)
      for (const b of names)
        assert.equal(
          Math.sign(utf8Order(a, b)),
          Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
          `${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
        );
  });

  it("takes static files from a directory and refuses symlinks that leave it", async () => {
    const root = path.join(dir, "kodata");
    await mkdir(path.join(root, "css"), { recursive: true });
    await writeFile(path.join(root, "index.html"), "<h1>down</h1>");
    await writeFile(path.join(root, "css", "site.css"), "h1{}");
    await symlink("index.html", path.join(root, "home.html"));
    const es = await entriesFromDirectory(root, "app/data");
    assert.deepEqual(
      normalizeEntries(es).map((e) => `${e.type}:${e.path}`),
      [
        "dir:app",
        "dir:app/data",
        "dir:app/data/css",
        "file:app/data/css/site.css",
        "symlink:app/data/home.html",
        "file:app/data/index.html",
      ],
    );
    await symlink("/etc/passwd", path.join(root, "escape"));
    await assert.rejects(entriesFromDirectory(root, "app/data"), /points outside/);
  });
});

const GOLDEN = {
  digest: "sha256:cda4c215aaba52f7c3745ff7483527eec63bf2ccc2fb6b702454b02c9849ce26",
  diffId: "sha256:bf199df5bdd67ef4126936030c6ee352d35c44f51fb9baf1d2b86efbb36f79bb",
  size: 2259495,
};
/** 3 = Unix, whatever the OS polyarch runs on (Node's zlib wrote a per-OS byte: nodejs/node#12244). */
const GOLDEN_OS_BYTE = 3;

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  // Copied: layerTar's chunks are only valid until the next one is asked for.
  for await (const c of it) out.push(Buffer.from(c));
  return out;
}

describe("the tar writer", () => {
  it("writes the bytes tar-stream writes (long and non-ASCII names, long link targets), and xattrs as raw PAX bytes", async () => {
    const { pack } = await import("tar-stream");
    const { layerTar } = await import("../src/layer/index.js");
    const long = `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(90)}`;
    const entries = [
      { type: "dir" as const, path: "a", mode: 0o750, uid: 5, gid: 6 },
      { type: "file" as const, path: "a/x", mode: 0o644, source: { data: Buffer.from("hello") } },
      { type: "file" as const, path: `a/${long}`, mode: 0o600, source: { data: Buffer.alloc(1000, 7) } },
      { type: "file" as const, path: "a/é", mode: 0o644, source: { data: Buffer.alloc(0) } },
      { type: "symlink" as const, path: "a/l", target: `/${"t".repeat(120)}` },
      { type: "whiteout" as const, path: "a/gone" },
    ];
    const ours = Buffer.concat(await collect(layerTar(entries, { mtime: 1700000000, uid: 0, gid: 0 })));
    // The same entries through tar-stream (sorted and with parents, as layerTar emits them).
    const p = pack();
    const base = { mtime: new Date(1700000000 * 1000), uname: "", gname: "" };
    const dirs = new Set<string>();
    for (const d of [...new Set(entries.map((e) => path.posix.dirname(e.path)).filter((d) => d !== "."))])
      for (let x = d; x !== "."; x = path.posix.dirname(x)) dirs.add(x);
    const all = [
      ...[...dirs].filter((d) => d !== "a").map((d) => ({ type: "dir" as const, path: d, mode: 0o755 })),
      ...entries,
    ].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
    const chunks: Buffer[] = [];
    const done = (async () => {
      for await (const c of p) chunks.push(c as Buffer);
    })();
    for (const e of all) {
      const own = { uid: "uid" in e ? (e.uid ?? 0) : 0, gid: "gid" in e ? (e.gid ?? 0) : 0 };
      if (e.type === "dir")
        p.entry({ ...base, ...own, name: `${e.path}/`, type: "directory", mode: e.mode ?? 0o755 });
      else if (e.type === "symlink")
        p.entry({ ...base, ...own, name: e.path, type: "symlink", linkname: e.target, mode: 0o777 });
      else if (e.type === "whiteout")
        p.entry({ ...base, ...own, name: "a/.wh.gone", type: "file", mode: 0, size: 0 }, Buffer.alloc(0));
      else p.entry({ ...base, ...own, name: e.path, type: "file", mode: e.mode }, Buffer.from(e.source.data));
    }
    p.finalize();
    await done;
    assert.ok(ours.equals(Buffer.concat(chunks)), "byte for byte");

    // A capability value is bytes, not text: 0x80 and above survive.
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const withCap = Buffer.concat(
      await collect(
        layerTar(
          [
            {
              type: "file",
              path: "bin/ping",
              mode: 0o755,
              source: { data: Buffer.from("x") },
              xattrs: { "security.capability": cap.toString("base64") },
            },
          ],
          { mtime: 0, uid: 0, gid: 0 },
        ),
      ),
    );
    const record = Buffer.concat([Buffer.from(" SCHILY.xattr.security.capability="), cap, Buffer.from("\n")]);
    assert.ok(withCap.includes(record), "the xattr's bytes are in the PAX header as they are");
    const seen: string[] = [];
    const ex = extract();
    const reading = (async () => {
      for await (const e of ex) {
        seen.push(
          `${e.header.name} ${e.header.type} ${Object.keys(e.header.pax ?? {})
            .sort()
            .join(",")}`,
        );
        e.resume();
      }
    })();
    ex.end(withCap);
    await reading;
    assert.deepEqual(seen, ["bin/ directory ", "bin/ping file SCHILY.xattr.security.capability,path"]);
  });
});
