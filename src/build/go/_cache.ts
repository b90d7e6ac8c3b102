/**
 * Housekeeping for the build cache (compressed layers, their index, stat fingerprints and
 * per-platform binaries), on Go's own rule for GOCACHE: an entry unused for five days goes,
 * checked at most once a day, and use refreshes an entry's mtime at most once an hour, so a
 * build does not rewrite metadata on every hit. Manifest lists kept under the same root are
 * user data and never touched.
 */
import { readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Unused for this long, an entry is removed. */
export const TRIM_AFTER = 5 * DAY;
/** Interrupted writes leave temp files; a day is far longer than any build. */
const TMP_AFTER = DAY;
const TRIM_MARKER = "trim.txt";

/** Marks a cache entry as used (its mtime), unless that was done within the hour. */
export async function markUsed(file: string, now = Date.now()): Promise<void> {
  const st = await stat(file).catch(() => undefined);
  if (!st || now - st.mtimeMs < HOUR) return;
  const t = new Date(now);
  await utimes(file, t, t).catch(() => {});
}

/**
 * Removes what has not been used for TRIM_AFTER, at most once a day (trim.txt records the
 * last run). Returns how many entries went, or undefined when it was not yet time.
 */
export async function trimCache(cacheDir: string, now = Date.now()): Promise<number | undefined> {
  const marker = path.join(cacheDir, TRIM_MARKER);
  const last = await stat(marker).catch(() => undefined);
  if (last && now - last.mtimeMs < DAY) return undefined;
  await writeFile(marker, `${Math.floor(now / 1000)}\n`).catch(() => {});
  let removed = 0;
  const old = async (p: string, age: number) => {
    const st = await stat(p).catch(() => undefined);
    return st !== undefined && now - st.mtimeMs > age;
  };
  const sweep = async (dir: string, age: number, recurse = false): Promise<void> => {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const p = path.join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory() && recurse) {
        await sweep(p, age, false);
      } else if (now - st.mtimeMs > age) {
        await rm(p, { recursive: true, force: true });
        removed++;
      }
    }
  };
  await sweep(path.join(cacheDir, "stat"), TRIM_AFTER);
  // layers/<encoder>/<diffID>; entries of older encoders are never used again, so they age out.
  await sweep(path.join(cacheDir, "layers"), TRIM_AFTER, true);
  await sweep(path.join(cacheDir, "blobs", "sha256"), TRIM_AFTER);
  await sweep(path.join(cacheDir, "tmp"), TMP_AFTER);
  // bin/<package>/<platform>/: Go rewrites (or re-touches) the binary on every build of it.
  for (const pkg of await readdir(path.join(cacheDir, "bin")).catch(() => [] as string[])) {
    const pkgDir = path.join(cacheDir, "bin", pkg);
    for (const plat of await readdir(pkgDir).catch(() => [] as string[])) {
      const platDir = path.join(pkgDir, plat);
      const files = await readdir(platDir).catch(() => [] as string[]);
      const ages = await Promise.all(files.map((f) => old(path.join(platDir, f), TRIM_AFTER)));
      if (ages.every(Boolean) && (await old(platDir, TRIM_AFTER))) {
        await rm(platDir, { recursive: true, force: true });
        removed++;
      }
    }
    if ((await readdir(pkgDir).catch(() => ["?"])).length === 0)
      await rm(pkgDir, { recursive: true, force: true });
  }
  return removed;
}
