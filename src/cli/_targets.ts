import { PolyarchError } from "../errors.js";
import { validateTag } from "../ref/index.js";

export type Target = { kind: "oci"; dir: string; tag?: string } | { kind: "tarball"; file: string };

/** Parses "oci:<dir>[:tag]" or "tarball:<file>"; a bare path means an OCI layout directory. */
export function parseTarget(s: string, allowTag: boolean): Target {
  if (s.startsWith("tarball:") || s.startsWith("docker-archive:")) {
    const file = s.slice(s.indexOf(":") + 1);
    if (!file) throw bad(s);
    return { kind: "tarball", file };
  }
  let rest = s.startsWith("oci:") ? s.slice(4) : s;
  if (rest === "") throw bad(s);
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/") && colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!allowTag) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `"${s}" names a tag in the output`,
        hint: "Give the output as oci:<dir> and the tags with --tag.",
      });
    }
    validateTag(tag);
  }
  return tag === undefined ? { kind: "oci", dir: rest } : { kind: "oci", dir: rest, tag };
}

function bad(s: string): PolyarchError {
  return new PolyarchError({
    code: "E_INPUT",
    message: `"${s}" is not an output polyarch knows`,
    hint: "Use oci:<dir> for an OCI image layout or tarball:<file> for a docker-loadable archive.",
  });
}
