/**
 * Image references: "[registry/]repository[:tag][@digest]", normalised the way docker does
 * (no registry → docker.io, a single path component on docker.io → library/…).
 * Grammar: https://github.com/distribution/reference/blob/main/reference.go
 */
import { type Digest, parseDigest } from "../digest/index.js";
import { PolyarchError } from "../errors.js";

export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DEFAULT_REGISTRY = "docker.io";
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$|^\[[a-fA-F0-9:]+\](?::[0-9]+)?$/;

const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)?([^/\s@]+)@(.*)$/i;
const DIGEST_LIKE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;

/** True when text starts with `user[:password]@` (before the host), which a reference never holds. */
export function hasUserinfo(text: string): boolean {
  const m = USERINFO.exec(text);
  return m !== null && !DIGEST_LIKE.test(m[3]!) && !m[2]!.includes("/");
}

/**
 * The text with any `user[:password]@` before the host replaced by `<redacted>@`: references
 * and URLs a user typed are shown this way in every message (issue 8).
 */
export function redactUserinfo(text: string): string {
  if (!hasUserinfo(text)) return text;
  const m = USERINFO.exec(text)!;
  return `${m[1] ?? ""}<redacted>@${m[3]!}`;
}

function refError(input: string, why: string, hint?: string): PolyarchError {
  return new PolyarchError({
    code: "E_REFERENCE",
    message: `invalid image reference "${redactUserinfo(input)}": ${why}`,
    hint: hint ?? "Write references as registry/repository:tag, e.g. ghcr.io/acme/api:1.2.3.",
  });
}

/** Validates a tag and returns it; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. */
export function validateTag(tag: string): string {
  if (!TAG.test(tag)) {
    const why =
      tag.length > 128
        ? `it is ${tag.length} characters long (at most 128)`
        : tag === ""
          ? "it is empty"
          : "tags may contain only letters, digits, _, . and -, and must not start with . or -";
    throw new PolyarchError({
      code: "E_TAG",
      message: `invalid tag "${tag}": ${why}`,
      hint: "Choose a tag like 1.2.3, latest or main-3f2a1b9c.",
    });
  }
  return tag;
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** Parses and normalises an image reference. */
export function parseReference(input: string): Reference {
  if (input === "" || /\s/.test(input)) throw refError(input, "it is empty or contains white space");
  if (hasUserinfo(input)) {
    throw refError(
      input,
      "it contains a user name or password",
      "Leave credentials out of references and URLs; store them with polyarch login <registry> (or docker login).",
    );
  }
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    const d = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      digest = parseDigest(d);
    } catch (e) {
      throw refError(input, (e as PolyarchError).message);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw refError(input, `"${tag}" is not a valid tag`);
  }
  const parts = rest.split("/");
  let registry = DEFAULT_REGISTRY;
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    if (!HOST.test(first)) throw refError(input, `"${first}" is not a valid registry host`);
    const port = /:(\d+)$/.exec(first)?.[1];
    if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))
      throw refError(input, `${port} is not a port number (1–65535)`);
    registry = first;
    parts.shift();
  }
  if (parts.length === 0 || parts.some((p) => p === ""))
    throw refError(input, "the repository name is empty");
  for (const p of parts) {
    if (/[A-Z]/.test(p)) throw refError(input, "repository name must be lowercase");
    if (!COMPONENT.test(p)) throw refError(input, `"${p}" is not a valid repository path component`);
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift("library");
  const repository = parts.join("/");
  if (registry.length + 1 + repository.length > 255) {
    throw refError(input, "registry and repository together must not be more than 255 characters");
  }
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * A registry as `polyarch login` and `--insecure` take it: host[:port], with an http(s)://
 * prefix and a trailing slash tolerated as docker login tolerates them.
 */
export function parseRegistryHost(input: string): string {
  const bad = (why: string, hint = "Give the registry as host[:port], e.g. ghcr.io or localhost:5000.") =>
    new PolyarchError({
      code: "E_REFERENCE",
      message: `invalid registry "${redactUserinfo(input)}": ${why}`,
      hint,
    });
  if (hasUserinfo(input))
    throw bad(
      "it contains a user name or password",
      "Pass the user with -u and the password with --password-stdin, never in the registry name.",
    );
  const host = input.replace(/^https?:\/\//i, "").replace(/\/+(v[12]\/?)?$/, "");
  if (host === "" || !HOST.test(host)) throw bad("it is not a host name with an optional port");
  const port = /:(\d+)$/.exec(host)?.[1];
  if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))
    throw bad(`${port} is not a port number (1–65535)`);
  return host === "index.docker.io" || host === "registry-1.docker.io" ? DEFAULT_REGISTRY : host;
}

/** Formats a reference in its full form: registry/repository[:tag][@digest]. */
export function formatReference(r: Reference): string {
  let s = `${r.registry}/${r.repository}`;
  if (r.tag) s += `:${r.tag}`;
  if (r.digest) s += `@${r.digest}`;
  return s;
}

/** The repository a cache setting names, registry included (a tag or digest given is not part of it). */
export function cacheRepository(text: string): string {
  const r = parseReference(text);
  return `${r.registry}/${r.repository}`;
}
