/**
 * Content addressing. A `Digest` is "<algorithm>:<hex>" of some bytes; in an image, a layer's
 * digest is of its compressed blob and its diffID of the uncompressed tar.
 * https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
 */
import { createHash, type Hash } from "node:crypto";
import { PolyarchError } from "../errors.js";
import type { Platform } from "../platform/index.js";

export type Digest = `sha256:${string}` | `sha512:${string}`;

const HEX_LENGTH = { sha256: 64, sha512: 128 } as const;
type Algorithm = keyof typeof HEX_LENGTH;

/** Parses and validates a digest string (lowercase hex of the exact length). */
export function parseDigest(s: string): Digest {
  const colon = s.indexOf(":");
  const alg = s.slice(0, colon);
  const hex = s.slice(colon + 1);
  if (colon < 0 || !(alg in HEX_LENGTH)) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `"${s}" is not a digest: it must start with sha256: or sha512:`,
      hint: "Write a digest as sha256: followed by 64 lowercase hex characters.",
    });
  }
  const want = HEX_LENGTH[alg as Algorithm];
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `"${s}" is not a digest: ${alg} needs exactly ${want} lowercase hex characters`,
      hint: "Copy the digest exactly as polyarch or the registry printed it.",
    });
  }
  return s as Digest;
}

export function isDigest(s: string): s is Digest {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

export function digestAlgorithm(d: Digest): Algorithm {
  return d.slice(0, d.indexOf(":")) as Algorithm;
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(":") + 1);
}

export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Incremental hasher that also counts bytes. */
export class Digester {
  #hash: Hash;
  #alg: Algorithm;
  size = 0;
  constructor(alg: Algorithm = "sha256") {
    this.#alg = alg;
    this.#hash = createHash(alg);
  }
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.size += chunk.byteLength;
  }
  digest(): Digest {
    return `${this.#alg}:${this.#hash.digest("hex")}` as Digest;
  }
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

/**
 * Checks bytes against a descriptor (size first, then digest) and says what differs.
 * Every byte polyarch reads back goes through this or `verifyingStream`.
 */
export function verifyBytes(data: Uint8Array, want: Pick<Descriptor, "digest" | "size">, what: string): void {
  if (data.byteLength !== want.size) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `size mismatch for ${what}: want ${want.size} bytes, got ${data.byteLength}`,
      hint: "The stored content is corrupt or was changed; remove it and write it again.",
    });
  }
  const alg = digestAlgorithm(want.digest);
  const got = `${alg}:${createHash(alg).update(data).digest("hex")}`;
  if (got !== want.digest) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `digest mismatch for ${what}: want ${want.digest}, got ${got} after ${data.byteLength} bytes`,
      hint: "The stored content is corrupt or was changed; remove it and write it again.",
    });
  }
}

/**
 * Passes chunks through while hashing them; reads at most `size` bytes and fails at the end
 * when the digest or size differs. Nothing downstream should commit before the stream ends.
 */
export async function* verifyingStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  want: Pick<Descriptor, "digest" | "size">,
  what: string,
): AsyncGenerator<Uint8Array> {
  const d = new Digester(digestAlgorithm(want.digest));
  for await (const chunk of source) {
    if (d.size + chunk.byteLength > want.size) {
      throw new PolyarchError({
        code: "E_DIGEST",
        message: `size mismatch for ${what}: more than the ${want.size} bytes its descriptor declares`,
        hint: "The stored content is corrupt or was changed; remove it and write it again.",
      });
    }
    d.update(chunk);
    yield chunk;
  }
  if (d.size !== want.size) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `size mismatch for ${what}: want ${want.size} bytes, got ${d.size}`,
      hint: "The stored content is corrupt or was changed; remove it and write it again.",
    });
  }
  const got = d.digest();
  if (got !== want.digest) {
    throw new PolyarchError({
      code: "E_DIGEST",
      message: `digest mismatch for ${what}: want ${want.digest}, got ${got} after ${d.size} bytes`,
      hint: "The stored content is corrupt or was changed; remove it and write it again.",
    });
  }
}
