/**
 * A real containerd (Debian's) for tests: its own root, state and socket in a temporary
 * directory, the CRI plugin off, runc through containerd-shim-runc-v2. `ctr` talks to it.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import path from "node:path";
import { cliRunner, superviseDaemon } from "./daemon.js";

export interface RunningContainerd {
  address: string;
  /** Runs ctr against it; throws with its output on a non-zero exit. */
  ctr(args: string[]): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<RunningContainerd> {
  // Short: the socket path is limited to 108 bytes.
  const dir = await mkdtemp("/tmp/pa-ct-");
  const address = path.join(dir, "c.sock");
  await writeFile(
    path.join(dir, "config.toml"),
    'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n',
  );
  const ctr = cliRunner("ctr", ["--address", address]);
  const daemon = await superviseDaemon(
    "containerd",
    "containerd",
    [
      "--config",
      path.join(dir, "config.toml"),
      "--root",
      path.join(dir, "root"),
      "--state",
      path.join(dir, "state"),
      "--address",
      address,
    ],
    dir,
    async () => await ctr(["version"]).then(() => true),
  );
  return { address, ctr, log: daemon.log, stop: daemon.stop };
}
