/**
 * Models of the OCI image manifest, image index and image config, parsed from raw bytes with
 * validation, and serialised deterministically. Raw bytes are always kept next to the parsed
 * form: digests are of bytes, and re-serialising someone else's JSON would change them.
 * Specs: https://github.com/opencontainers/image-spec (manifest.md, image-index.md, config.md)
 */
import { type Descriptor, type Digest, isDigest } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import type { Platform } from "../platform/index.js";
import { isImageMediaType, isIndexMediaType, MediaType } from "./mediatypes.js";

export * from "./mediatypes.js";

/** Largest manifest polyarch reads or writes (distribution refuses larger PUT bodies). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Largest image config polyarch reads. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  "os.version"?: string;
  "os.features"?: string[];
  variant?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, Record<string, never>>;
    Env?: string[];
    Entrypoint?: string[];
    Cmd?: string[];
    Volumes?: Record<string, Record<string, never>>;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    StopSignal?: string;
    /** Docker's fields, written by Dockerfile builds (HEALTHCHECK, SHELL, ONBUILD). */
    Healthcheck?: {
      Test: string[];
      Interval?: number;
      Timeout?: number;
      StartPeriod?: number;
      StartInterval?: number;
      Retries?: number;
    };
    Shell?: string[];
    OnBuild?: string[];
  };
  rootfs: { type: "layers"; diff_ids: Digest[] };
  history?: {
    created?: string;
    created_by?: string;
    author?: string;
    comment?: string;
    empty_layer?: boolean;
  }[];
}

/**
 * Structural validation, written out rather than with a schema library: it runs on every
 * manifest read, and loading one cost ~100 ms of start-up, a quarter of the no-change
 * rebuild budget. Each check names the path of the first bad field.
 */
type Check = (v: unknown, at: string) => void;

class Invalid extends Error {}

function fail(at: string, why: string): never {
  throw new Invalid(at ? `${at}: ${why}` : why);
}
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const str: Check = (v, at) => {
  if (typeof v !== "string") fail(at, "expected a string");
};
const nonEmptyStr: Check = (v, at) => {
  if (typeof v !== "string" || v === "") fail(at, "expected a non-empty string");
};
const strArray: Check = (v, at) => {
  if (!Array.isArray(v)) fail(at, "expected an array");
  for (const [i, x] of v.entries()) str(x, `${at}.${i}`);
};
const strRecord: Check = (v, at) => {
  if (!isObj(v)) fail(at, "expected an object of strings");
  for (const [k, x] of Object.entries(v)) str(x, `${at}.${k}`);
};
const digestCheck: Check = (v, at) => {
  if (typeof v !== "string" || !isDigest(v)) fail(at, "not a valid digest");
};
const sizeCheck: Check = (v, at) => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(at, "expected a non-negative integer");
};
function fields(
  v: unknown,
  at: string,
  required: Record<string, Check>,
  optional: Record<string, Check>,
): void {
  if (!isObj(v)) fail(at, "expected an object");
  const p = (k: string) => (at ? `${at}.${k}` : k);
  for (const [k, c] of Object.entries(required)) {
    if (!(k in v)) fail(p(k), "missing");
    c(v[k], p(k));
  }
  for (const [k, c] of Object.entries(optional)) if (k in v && v[k] !== undefined) c(v[k], p(k));
}
const platformCheck: Check = (v, at) =>
  fields(
    v,
    at,
    { architecture: str, os: str },
    { "os.version": str, "os.features": strArray, variant: str, features: strArray },
  );
const descriptorCheck: Check = (v, at) =>
  fields(
    v,
    at,
    { mediaType: nonEmptyStr, digest: digestCheck, size: sizeCheck },
    { urls: strArray, annotations: strRecord, platform: platformCheck, artifactType: str, data: str },
  );
const descriptors: Check = (v, at) => {
  if (!Array.isArray(v)) fail(at, "expected an array");
  for (const [i, x] of v.entries()) descriptorCheck(x, `${at}.${i}`);
};
const schema2: Check = (v, at) => {
  if (v !== 2) fail(at, "expected 2");
};
const manifestCheck: Check = (v, at) =>
  fields(
    v,
    at,
    { schemaVersion: schema2, config: descriptorCheck, layers: descriptors },
    { mediaType: str, artifactType: str, subject: descriptorCheck, annotations: strRecord },
  );
const indexCheck: Check = (v, at) =>
  fields(
    v,
    at,
    { schemaVersion: schema2, manifests: descriptors },
    { mediaType: str, artifactType: str, subject: descriptorCheck, annotations: strRecord },
  );
const configCheck: Check = (v, at) => {
  fields(
    v,
    at,
    {
      architecture: str,
      os: str,
      rootfs: (r, a) =>
        fields(
          r,
          a,
          {
            type: str,
            diff_ids: (d, b) => {
              if (!Array.isArray(d)) fail(b, "expected an array");
              for (const [i, x] of d.entries()) digestCheck(x, `${b}.${i}`);
            },
          },
          {},
        ),
    },
    {},
  );
};

function check(c: Check, v: unknown, what: string): void {
  try {
    c(v, "");
  } catch (e) {
    if (e instanceof Invalid) throw invalid(what, e.message);
    throw e;
  }
}

function invalid(what: string, why: string): PolyarchError {
  return new PolyarchError({
    code: "E_MANIFEST",
    message: `invalid ${what}: ${why}`,
    hint: "The document is not a valid OCI or Docker v2.2 document; rebuild or re-copy it.",
  });
}

function parseJson(raw: Uint8Array, what: string, limit: number): Record<string, unknown> {
  if (raw.byteLength > limit) {
    throw new PolyarchError({
      code: "E_SIZE",
      message: `${what} exceeds ${limit} bytes (it has ${raw.byteLength})`,
      hint: "polyarch refuses oversize manifests and configs to bound memory; check the source.",
    });
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8"));
  } catch (e) {
    throw invalid(what, `not JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalid(what, "not a JSON object");
  return v as Record<string, unknown>;
}

export type Parsed =
  | { kind: "index"; mediaType: string; index: ImageIndex }
  | { kind: "image"; mediaType: string; manifest: ImageManifest };

/**
 * Parses raw manifest bytes as an image manifest or index. `contentType` is the media type the
 * bytes were served or stored under; a document whose own `mediaType` disagrees, or that has
 * both `manifests` and `layers`, is refused (CVE-2021-41190).
 */
export function parseManifest(raw: Uint8Array, contentType?: string): Parsed {
  const obj = parseJson(raw, "manifest", MAX_MANIFEST_BYTES);
  const declared = typeof obj["mediaType"] === "string" ? obj["mediaType"] : undefined;
  if (declared && contentType && declared !== contentType) {
    throw invalid("manifest", `its mediaType ${declared} differs from the content type ${contentType}`);
  }
  if ("manifests" in obj && ("layers" in obj || "config" in obj)) {
    throw invalid("manifest", "it has both manifests and layers/config (ambiguous document)");
  }
  const mt = declared ?? contentType;
  if (
    mt === MediaType.DOCKER_SCHEMA1 ||
    mt === MediaType.DOCKER_SCHEMA1_SIGNED ||
    obj["schemaVersion"] === 1
  ) {
    throw new PolyarchError({
      code: "E_MEDIA_TYPE",
      message: "Docker schema 1 manifests are not supported",
      hint: "Re-push the image with a current Docker or any OCI tool to get a v2 manifest.",
    });
  }
  const looksIndex = isIndexMediaType(mt) || (mt === undefined && "manifests" in obj);
  if (looksIndex) {
    check(indexCheck, obj, "image index");
    return { kind: "index", mediaType: mt ?? MediaType.OCI_INDEX, index: obj as unknown as ImageIndex };
  }
  if (isImageMediaType(mt) || (mt === undefined && "layers" in obj)) {
    check(manifestCheck, obj, "image manifest");
    return {
      kind: "image",
      mediaType: mt ?? MediaType.OCI_MANIFEST,
      manifest: obj as unknown as ImageManifest,
    };
  }
  throw new PolyarchError({
    code: "E_MEDIA_TYPE",
    message: `unknown manifest media type ${mt ?? "(none)"}`,
    hint: "polyarch understands OCI and Docker v2.2 manifests and indexes.",
  });
}

export function parseConfig(raw: Uint8Array): ImageConfig {
  const obj = parseJson(raw, "image config", MAX_CONFIG_BYTES);
  check(configCheck, obj, "image config");
  const type = (obj["rootfs"] as { type: string }).type;
  if (type !== "layers") throw invalid("image config", `rootfs.type is "${type}", not "layers"`);
  return obj as unknown as ImageConfig;
}

/**
 * Serialises a document polyarch creates. Key order is fixed by how the objects are built,
 * so the same inputs always give the same bytes.
 */
export function serialize(doc: unknown): Uint8Array {
  const bytes = Buffer.from(JSON.stringify(doc), "utf8");
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new PolyarchError({
      code: "E_SIZE",
      message: `document exceeds ${MAX_MANIFEST_BYTES} bytes`,
      hint: "Registries refuse manifests above 4 MiB; reduce annotations or platforms.",
    });
  }
  return bytes;
}

/** A descriptor with keys in the canonical order (mediaType, digest, size, …). */
export function descriptor(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.artifactType) out.artifactType = d.artifactType;
  if (d.urls?.length) out.urls = d.urls;
  if (d.annotations && Object.keys(d.annotations).length) out.annotations = sortedRecord(d.annotations);
  if (d.platform) out.platform = platformObject(d.platform);
  return out;
}

export function platformObject(p: Platform): Platform {
  const out: Platform = { architecture: p.architecture, os: p.os };
  if (p["os.version"]) out["os.version"] = p["os.version"];
  if (p["os.features"]?.length) out["os.features"] = p["os.features"];
  if (p.variant) out.variant = p.variant;
  return out;
}

export function sortedRecord<T>(r: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(r).sort()) out[k] = r[k] as T;
  return out;
}

/** Standard annotation keys. https://github.com/opencontainers/image-spec/blob/main/annotations.md */
export const Annotation = {
  CREATED: "org.opencontainers.image.created",
  SOURCE: "org.opencontainers.image.source",
  REVISION: "org.opencontainers.image.revision",
  VERSION: "org.opencontainers.image.version",
  TITLE: "org.opencontainers.image.title",
  REF_NAME: "org.opencontainers.image.ref.name",
  BASE_NAME: "org.opencontainers.image.base.name",
  BASE_DIGEST: "org.opencontainers.image.base.digest",
} as const;
