/**
 * A real Docker engine (Debian's docker.io) for tests: its own data and exec roots and a unix
 * socket in a temporary directory, no iptables, no bridge (so builds and containers use
 * `--network host` or `none`), overlay2 storage. Stopped and removed by `stop`.
 */
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { exec } from "../util/exec.js";
import { cliRunner, superviseDaemon } from "./daemon.js";

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
  const host = `unix://${sock}`;
  const env = { ...process.env, DOCKER_HOST: host };
  const docker = cliRunner(CLI, [], env);
  const daemon = await superviseDaemon(
    "dockerd",
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
      host,
    ],
    dir,
    async () => (await exec(CLI, ["version", "--format", "{{.Server.Version}}"], { env })).code === 0,
  );
  return { host, cli: CLI, docker, log: daemon.log, stop: daemon.stop };
}
