/**
 * Where an artifact is read from or written to, as users write it: `oci:<dir>[:tag]` (an OCI
 * image layout), `tarball:<file>` (docker load / oci-archive), or a registry reference.
 */
import { PolyarchError } from "../errors.js";
import { parseReference, redactUserinfo, type Reference, validateTag } from "../ref/index.js";

export type Location =
  | { kind: "oci"; dir: string; tag?: string }
  | { kind: "tarball"; file: string }
  | { kind: "registry"; ref: Reference; text: string };

/** Parses "oci:<dir>[:tag]", "tarball:<file>", or else a registry reference. */
export function parseLocation(s: string): Location {
  if (s.startsWith("tarball:") || s.startsWith("docker-archive:")) {
    const file = s.slice(s.indexOf(":") + 1);
    if (!file) throw bad(s);
    return { kind: "tarball", file };
  }
  if (s.startsWith("oci:")) {
    let rest = s.slice(4);
    if (rest === "") throw bad(s);
    let tag: string | undefined;
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/") && colon >= 0) {
      tag = validateTag(rest.slice(colon + 1));
      rest = rest.slice(0, colon);
    }
    return tag === undefined ? { kind: "oci", dir: rest } : { kind: "oci", dir: rest, tag };
  }
  if (s.startsWith("docker://")) s = s.slice("docker://".length);
  return { kind: "registry", ref: parseReference(s), text: s };
}

/** A build output: oci:<dir> or tarball:<file> (tags come from --tag). */
export function parseOutput(s: string): Exclude<Location, { kind: "registry" }> {
  const l = parseLocation(s);
  if (l.kind === "registry") throw bad(s);
  if (l.kind === "oci" && l.tag) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `"${redactUserinfo(s)}" names a tag in the output`,
      hint: "Give the output as oci:<dir> and the tags with --tag.",
    });
  }
  return l;
}

function bad(s: string): PolyarchError {
  return new PolyarchError({
    code: "E_INPUT",
    message: `"${redactUserinfo(s)}" is not an output polyarch knows`,
    hint: "Use oci:<dir> for an OCI image layout, tarball:<file> for a docker-loadable archive, or --push <registry>/<repo>[:tag].",
  });
}
