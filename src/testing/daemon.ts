/**
 * A daemon a test starts (dockerd, containerd) in a temporary directory of its own: started,
 * waited for until `ready` says so, and stopped (SIGTERM, then SIGKILL after 15 s) with its
 * leftover mounts unmounted and the directory removed.
 */
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { exec } from "../util/exec.js";

export interface Daemon {
  log: () => string;
  stop: () => Promise<void>;
}

/** A daemon's CLI: runs it with `args` after `base`, throws with its output on a non-zero exit. */
export function cliRunner(
  bin: string,
  base: string[],
  env?: Record<string, string | undefined>,
): (args: string[]) => Promise<string> {
  return async (args) => {
    const r = await exec(bin, [...base, ...args], env ? { env } : {});
    if (r.code !== 0) throw new Error(`${bin} ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
}

export async function superviseDaemon(
  name: string,
  bin: string,
  args: string[],
  dir: string,
  ready: () => Promise<boolean>,
): Promise<Daemon> {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    // overlay snapshots leave mounts behind a killed daemon; unmount what is left under it.
    await exec("sh", ["-c", `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`${name} exited: ${out.slice(-2000)}`);
    }
    if (await ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not start: ${out.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { log: () => out, stop };
}
