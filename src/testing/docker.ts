/**
 * A real Docker engine (Debian's docker.io) for tests: its own data and exec roots and a unix
 * socket in a temporary directory, no iptables, no bridge (so builds and containers use
 * `--network host` or `none`), overlay2 storage. Stopped and removed by `stop`.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { exec } from "../util/exec.js";

export interface RunningDocker {
  /** DOCKER_HOST for the engine, unix:///… */
  host: string;
  /** The Docker CLI that comes with the engine (the one on PATH may be another version). */
  cli: string;
  /** Runs the engine's CLI against it; throws with its output on a non-zero exit. */
  docker(args: string[]): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

const DOCKERD = "/usr/sbin/dockerd";
const CLI = "/usr/bin/docker";

export async function startDocker(): Promise<RunningDocker> {
  // Short: the engine's unix sockets live under it and a socket path is limited to 108 bytes.
  const dir = await mkdtemp("/tmp/pa-dk-");
  const sock = path.join(dir, "docker.sock");
  const child = spawn(
    DOCKERD,
    [
      "--iptables=false",
      "--ip-masq=false",
      "--bridge=none",
      "--storage-driver=overlay2",
      "--data-root",
      path.join(dir, "data"),
      "--exec-root",
      path.join(dir, "exec"),
      "--pidfile",
      path.join(dir, "docker.pid"),
      "-H",
      `unix://${sock}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  const host = `unix://${sock}`;
  const env = { ...process.env, DOCKER_HOST: host };
  const docker = async (args: string[]) => {
    const r = await exec(CLI, args, { env });
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dockerd exited: ${out.slice(-2000)}`);
    const r = await exec(CLI, ["version", "--format", "{{.Server.Version}}"], { env }).catch(() => undefined);
    if (r?.code === 0) break;
    if (Date.now() > deadline) throw new Error(`dockerd did not start: ${out.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    host,
    cli: CLI,
    docker,
    log: () => out,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      // overlay2 leaves read-only mounts behind a killed engine; unmount what is left under it.
      await exec("sh", ["-c", `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
