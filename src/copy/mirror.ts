/**
 * Mirror lists in the shape of seed 002's thirdparty.txt: one `source [destination]` per line,
 * `#` comments and blank lines allowed. A missing destination is derived from a prefix
 * (`--to registry/prefix` + the source's repository path and tag).
 */
import { PolyarchError } from "../errors.js";
import { formatReference, parseReference, type Reference } from "../ref/index.js";

export interface MirrorEntry {
  line: number;
  source: Reference;
  destination: Reference;
}

/** Parses a mirror list; errors name the file and line. */
export function parseMirrorList(text: string, file: string, to: string | undefined): MirrorEntry[] {
  const out: MirrorEntry[] = [];
  const prefix = to?.replace(/\/+$/, "");
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) return;
    const parts = line.split(/\s+/);
    const at = `${file}:${i + 1}`;
    if (parts.length > 2) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${at}: expected "source [destination]", found ${parts.length} words`,
        hint: "Write one image per line, optionally followed by where it goes.",
      });
    }
    let source: Reference;
    try {
      source = parseReference(parts[0]!);
    } catch (e) {
      throw (e as PolyarchError).withContext(at);
    }
    if (!source.tag && !source.digest) source.tag = "latest";
    let destination: Reference;
    if (parts[1]) {
      try {
        destination = parseReference(parts[1]);
      } catch (e) {
        throw (e as PolyarchError).withContext(at);
      }
    } else {
      if (!prefix) {
        throw new PolyarchError({
          code: "E_INPUT",
          message: `${at}: no destination for ${parts[0]}`,
          hint: "Give a destination on the line, or --to <registry/prefix> for all lines.",
        });
      }
      const repo =
        source.registry === "docker.io" ? source.repository.replace(/^library\//, "") : source.repository;
      destination = parseReference(`${prefix}/${repo}`);
    }
    if (!destination.tag && !destination.digest) destination.tag = source.tag ?? "latest";
    out.push({ line: i + 1, source, destination });
  });
  return out;
}

export { formatReference };
