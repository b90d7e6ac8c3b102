import { readFile } from "node:fs/promises";
import { parseMirrorList } from "../copy/mirror.js";
import { loadConfigFile } from "../config/index.js";
import type { Digest } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import { mirrorOne } from "../orchestrate/copy.js";
import { formatReference } from "../ref/index.js";
import { type CliIO, humanSize, table } from "./_io.js";
import { makeOrchestrator } from "./_world.js";

export interface MirrorFlags {
  file?: string;
  to?: string;
  insecure?: string[];
  dryRun?: boolean;
  json?: boolean;
}

/**
 * Copies every image of the list whose destination digest differs from the source's (all
 * platforms, digests unchanged) and says `up to date` for the rest. Each image is all or
 * nothing: its tag moves only after all its children are stored.
 */
export async function runMirror(flags: MirrorFlags, io: CliIO, signal?: AbortSignal): Promise<number> {
  // The list: -f <file>, else the mirror section of polyarch.yaml (its `to` unless --to is given).
  let entries;
  if (flags.file) {
    let text: string;
    try {
      text = await readFile(flags.file, "utf8");
    } catch (e) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `cannot read ${flags.file}`,
        hint: "Check the path of the mirror list.",
        cause: e,
      });
    }
    entries = parseMirrorList(text, flags.file, flags.to);
  } else {
    const file = await loadConfigFile(io.cwd).catch(() => undefined);
    if (!file?.mirror?.images.length) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: "mirror needs a list",
        hint: "Pass -f thirdparty.txt (one `source [destination]` per line), or add mirror.images to polyarch.yaml.",
      });
    }
    entries = parseMirrorList(
      file.mirror.images.join("\n"),
      `${file.file} mirror.images`,
      flags.to ?? file.mirror.to,
    );
  }
  const orch = makeOrchestrator(io, flags.insecure ? { insecure: flags.insecure } : {});
  const rows = [["SOURCE", "DESTINATION", "RESULT", "DIGEST"]];
  const results: { source: string; destination: string; result: string; digest: string }[] = [];
  let failed = 0;
  try {
    for (const e of entries) {
      const s = formatReference(e.source);
      const d = formatReference(e.destination);
      let result: string;
      let digest: Digest | "" = "";
      try {
        const r = await mirrorOne(orch, e, {
          ...(flags.dryRun ? { dryRun: true } : {}),
          ...(signal ? { signal } : {}),
        });
        digest = r.digest;
        result =
          r.result === "copied" ? `copied (${humanSize(r.stats?.bytesUploaded ?? 0)} uploaded)` : r.result;
      } catch (err) {
        failed++;
        result = `FAILED: ${(err as Error).message}`;
      }
      io.stderr.write(`${s} → ${d}: ${result}\n`);
      rows.push([s, d, result.startsWith("FAILED") ? "FAILED" : result, digest]);
      results.push({ source: s, destination: d, result, digest });
    }
  } finally {
    await orch.close();
  }
  if (flags.json) io.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else io.stdout.write(`${table(rows)}\n`);
  if (failed > 0) {
    throw new PolyarchError({
      code: "E_REGISTRY",
      message: `${failed} of ${entries.length} images could not be mirrored`,
      hint: "See the lines marked FAILED above; a rerun copies only what is still missing.",
    });
  }
  return 0;
}
