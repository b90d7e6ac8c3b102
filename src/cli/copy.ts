import { copy } from "../orchestrate/copy.js";
import { parseLocation } from "../orchestrate/location.js";
import { parsePlatformList } from "../platform/index.js";
import { type CliIO, humanSize } from "./_io.js";
import { makeOrchestrator } from "./_world.js";

export interface CopyFlags {
  platform?: string[];
  insecure?: string[];
  json?: boolean;
  quiet?: boolean;
}

/**
 * Copies an image or index between registries and layouts, digests unchanged (all platforms
 * unless --platform picks some). `push` is the same with a layout source and a registry target.
 */
export async function runCopy(
  srcArg: string,
  dstArg: string,
  flags: CopyFlags,
  io: CliIO,
  signal?: AbortSignal,
  verb = "copy",
): Promise<number> {
  const src = parseLocation(srcArg);
  const dst = parseLocation(dstArg);
  const platforms = flags.platform?.length ? parsePlatformList(flags.platform) : [];
  const log = (s: string) => {
    if (!flags.quiet) io.stderr.write(`${s}\n`);
  };
  const orch = makeOrchestrator(io, flags.insecure ? { insecure: flags.insecure } : {});
  try {
    const r = await copy(orch, src, dst, { platforms, verb, ...(signal ? { signal } : {}) });
    if (r.upToDate) log(`${r.references[0]!.replace(/@sha256:[a-f0-9]+$/, "")} is up to date (${r.digest})`);
    else if (r.stats) {
      const st = r.stats;
      log(
        `${verb}: ${st.blobsUploaded} blob${st.blobsUploaded === 1 ? "" : "s"} uploaded (${humanSize(st.bytesUploaded)}), ${st.blobsPresent} already there, ${st.blobsMounted} mounted; ${st.manifestsPut} manifests written`,
      );
    }
    if (flags.json)
      io.stdout.write(`${JSON.stringify({ digest: r.digest, references: r.references }, null, 2)}\n`);
    else for (const ref of r.references) io.stdout.write(`${ref}\n`);
    return 0;
  } finally {
    await orch.close();
  }
}
