/** The layout store under concurrency and crashes (reliability.md LAY-01…03, LAY-05). */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, symlink, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { sha256 } from "../src/digest/index.js";
import { OciLayout } from "../src/layout/index.js";
import { MediaType } from "../src/manifest/index.js";
import { cleanup, tempDir } from "./_fixture.js";

let work: string;
before(async () => {
  work = await tempDir("layout");
});
after(() => cleanup(work));

const here = path.dirname(fileURLToPath(import.meta.url));

describe("OCI layout store", () => {
  it("8 parallel writers of one blob give one file and no error", async () => {
    const layout = await OciLayout.openOrCreate(path.join(work, "par"));
    const data = Buffer.alloc(1 << 20, 7);
    const desc = { digest: sha256(data), size: data.length };
    await Promise.all(Array.from({ length: 8 }, () => layout.putBlobBytes(desc, data)));
    const files = await readdir(path.join(work, "par", "blobs", "sha256"));
    assert.deepEqual(files, [desc.digest.slice(7)]);
  });

  it("refuses a blob whose bytes do not match and leaves no file", async () => {
    const layout = await OciLayout.openOrCreate(path.join(work, "bad"));
    const data = Buffer.from("abc");
    await assert.rejects(layout.putBlob({ digest: sha256("abd"), size: 3 }, [data]), /digest mismatch/);
    assert.deepEqual(await readdir(path.join(work, "bad", "blobs", "sha256")), []);
  });

  it("stores a local file by hard link on one file system and by copy across, checked either way", async () => {
    const data = Buffer.alloc(3 << 20, 5);
    data.write("a layer from the cache");
    const desc = { digest: sha256(data), size: data.length };
    const src = path.join(work, "cached-layer");
    await writeFile(src, data);
    const layout = await OciLayout.openOrCreate(path.join(work, "linked"));
    assert.equal(await layout.putBlobFile(desc, src), true);
    const [a, b] = [await stat(src), await stat(layout.blobPath(desc.digest))];
    assert.equal(b.ino, a.ino, "the blob is the cache file's inode");
    assert.equal(b.nlink, 2);
    assert.equal(b.mode & 0o777, 0o444);
    assert.equal(await layout.putBlobFile(desc, src), false, "already stored");
    // /dev/shm is another file system (tmpfs): a copy, same bytes.
    const shm = await mkdtemp("/dev/shm/polyarch-test-");
    try {
      const other = path.join(shm, "layer");
      await writeFile(other, data);
      const copied = await OciLayout.openOrCreate(path.join(work, "copied"));
      assert.equal(await copied.putBlobFile(desc, other), true);
      const c = await stat(copied.blobPath(desc.digest));
      assert.notEqual(c.ino, (await stat(other)).ino);
      assert.equal(c.nlink, 1);
      assert.deepEqual(await readFile(copied.blobPath(desc.digest)), data);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
    // Bytes that are not the descriptor's: refused, nothing named, no link or temp left.
    const wrong = path.join(work, "wrong-layer");
    await writeFile(wrong, "not it");
    const refused = await OciLayout.openOrCreate(path.join(work, "refused"));
    await assert.rejects(refused.putBlobFile({ digest: sha256("at it"), size: 6 }, wrong), /digest mismatch/);
    assert.deepEqual(await readdir(path.join(work, "refused", "blobs", "sha256")), []);
    assert.equal((await stat(wrong)).nlink, 1);
  });

  it("refuses symlinked blobs and a hostile index", async () => {
    const dir = path.join(work, "hostile");
    const layout = await OciLayout.openOrCreate(dir);
    const d = sha256("x");
    await symlink("/etc/hostname", path.join(dir, "blobs", "sha256", d.slice(7)));
    await assert.rejects(layout.hasBlob({ digest: d, size: 1 }), /is a symlink/);
    assert.throws(() => layout.blobPath("sha256:../../etc/passwd"), /not a digest/);
    await writeFile(
      path.join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OCI_MANIFEST,
        config: { mediaType: "x", digest: d, size: 1 },
        layers: [],
      }),
    );
    await assert.rejects(OciLayout.open(dir), /not an image index|not a valid image index/);
    await unlink(path.join(dir, "oci-layout"));
    await assert.rejects(OciLayout.open(dir), /not an OCI image layout/);
  });

  it("two processes tagging at once lose no tag (index.json under a lock)", async () => {
    const dir = path.join(work, "tags");
    await OciLayout.openOrCreate(dir);
    const worker = path.join(here, "_layout_worker.js");
    const run = (tagPrefix: string) =>
      new Promise<number>((resolve) => {
        const c = spawn(process.execPath, [worker, "tag", dir, tagPrefix, "20"], { stdio: "inherit" });
        c.on("exit", (code) => resolve(code ?? 1));
      });
    assert.deepEqual(await Promise.all([run("a"), run("b"), run("c")]), [0, 0, 0]);
    const tags = (await (await OciLayout.open(dir)).tags()).map((t) => t.tag).sort();
    assert.equal(tags.length, 60);
  });

  it("a writer killed at random moments never leaves a blob that mismatches its name or a broken index.json", async () => {
    const dir = path.join(work, "kill");
    await OciLayout.openOrCreate(dir);
    const worker = path.join(here, "_layout_worker.js");
    for (let i = 0; i < 12; i++) {
      const c = spawn(process.execPath, [worker, "write", dir, String(i), "50"], { stdio: "ignore" });
      const exited = new Promise((r) => c.once("exit", r));
      await new Promise((r) => setTimeout(r, 250 + ((i * 97) % 400)));
      c.kill("SIGKILL");
      await exited;
    }
    const layout = await OciLayout.open(dir); // index.json and oci-layout still parse
    const blobs = path.join(dir, "blobs", "sha256");
    let checked = 0;
    for (const name of await readdir(blobs)) {
      if (name.includes(".tmp-")) continue; // temp files are ignored (and never named as blobs)
      const data = await readFile(path.join(blobs, name));
      assert.equal(sha256(data), `sha256:${name}`);
      checked++;
    }
    assert.ok(checked > 0, "some blobs were completed");
    for (const t of await layout.tags())
      assert.ok(await layout.hasBlob(t.descriptor), `tag ${t.tag} points at a stored blob`);
    // The next write, under the lock, removes what the killed writers left (issue 8) — but
    // never a temp file whose writer is alive (this process stands in for one).
    const live = path.join(blobs, `${"0".repeat(64)}.tmp-${process.pid}-live`);
    await writeFile(live, "in progress");
    const next = Buffer.from("after the kills");
    const desc = { mediaType: MediaType.OCI_MANIFEST, digest: sha256(next), size: next.length };
    await layout.putBlobBytes(desc, next);
    await layout.setTags(desc, ["after"]);
    const left = (await readdir(blobs)).filter((n) => n.includes(".tmp-"));
    assert.deepEqual(left, [path.basename(live)], "only the live writer's temp file is left");
  });

  it("two writers creating the same new layout both succeed, into one layout", async () => {
    for (let i = 0; i < 10; i++) {
      const dir = path.join(work, `new-${i}`);
      const a = Buffer.from(`a${i}`);
      const b = Buffer.from(`b${i}`);
      const write = async (data: Buffer, tag: string) => {
        const layout = await OciLayout.openOrCreate(dir);
        const desc = { mediaType: MediaType.OCI_MANIFEST, digest: sha256(data), size: data.length };
        await layout.putBlobBytes(desc, data);
        await layout.setTags(desc, [tag]);
      };
      await Promise.all([write(a, "a"), write(b, "b")]);
      const tags = (await (await OciLayout.open(dir)).tags()).map((t) => t.tag).sort();
      assert.deepEqual(tags, ["a", "b"]);
      assert.deepEqual(
        (await readdir(work)).filter((n) => n.startsWith(`new-${i}.tmp-`)),
        [],
      );
    }
  });

  it("reads never follow a symlinked blob and name a missing one", async () => {
    const dir = path.join(work, "reads");
    const layout = await OciLayout.openOrCreate(dir);
    const data = Buffer.from("outside the layout");
    const outside = path.join(work, "outside-blob");
    await writeFile(outside, data);
    const desc = { digest: sha256(data), size: data.length };
    await symlink(outside, layout.blobPath(desc.digest));
    const drain = async () => {
      for await (const c of layout.readBlob(desc)) void c;
    };
    await assert.rejects(drain(), /is a symlink/);
    await assert.rejects(layout.readBlobBytes(desc, 1024), /is a symlink/);
    await unlink(layout.blobPath(desc.digest));
    await assert.rejects(
      drain(),
      (e: Error & { code?: string }) => e.code === "E_NOT_FOUND" && /is missing from/.test(e.message),
    );
    // A read that is made and never iterated opens nothing, so it cannot fail later unhandled.
    layout.readBlob(desc);
    await new Promise((r) => setTimeout(r, 20));
  });
});
