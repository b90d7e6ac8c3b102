import os from "node:os";
import { Orchestrator } from "../orchestrate/index.js";
import type { CliIO } from "./_io.js";
import { makeClient } from "./_registry.js";
import { resolveCacheDir } from "./_resolve.js";

/**
 * The orchestrator every command uses, from the environment (the only place it is read):
 * POLYARCH_GO, the cache directory, the registry client with docker's credentials.
 */
export function makeOrchestrator(
  io: CliIO,
  opts: { insecure?: string[]; jobs?: number; builders?: Record<string, string> } = {},
): Orchestrator {
  return new Orchestrator({
    toolchain: {
      env: io.env,
      goBinary: io.env["POLYARCH_GO"] || "go",
      cacheDir: resolveCacheDir(io.env),
      jobs: opts.jobs ?? os.availableParallelism(),
      ...(opts.builders ? { builders: opts.builders } : {}),
    },
    client: () => makeClient(io, opts.insecure),
  });
}
