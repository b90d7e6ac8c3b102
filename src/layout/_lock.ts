import { open, readFile, rm, stat } from "node:fs/promises";
import { PolyarchError } from "../errors.js";

/** True while a process with this pid exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * An exclusive lock file (O_CREAT|O_EXCL) holding the owner's pid. Waiters retry with a
 * randomised delay that starts below 16 ms and doubles up to 2048 ms (reliability.md LAY-03);
 * a lock whose owner process is gone is taken over.
 */
export async function withLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  let bound = 16;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const fh = await open(lockPath, "wx", 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number.parseInt(await readFile(lockPath, "utf8").catch(() => ""), 10);
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (!Number.isInteger(owner)) {
        // A lock file being written right now, or left empty by a crash: give it a moment.
        const st = await stat(lockPath).catch(() => undefined);
        if (st && Date.now() - st.mtimeMs > 10_000) {
          await rm(lockPath, { force: true });
          continue;
        }
      }
      if (Date.now() > deadline) {
        throw new PolyarchError({
          code: "E_LOCKED",
          message: `${lockPath} is held by process ${owner || "unknown"}`,
          hint: "Another polyarch is writing this layout; wait for it, or remove the lock file if no polyarch is running.",
        });
      }
      await new Promise((r) => setTimeout(r, Math.random() * bound));
      bound = Math.min(bound * 2, 2048);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}
