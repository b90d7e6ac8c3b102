/**
 * Copy is source → sink with no build: the source's raw manifest bytes are stored unchanged,
 * children first, so the destination digest equals the source digest (reliability.md MIR-01).
 * Picking platforms writes a new index with only those children, so it has a new digest
 * (MIR-02); picking one platform copies that image itself.
 */
import type { Descriptor } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import { type Artifact, findPlatform, imagePlatform, indexFromCore } from "../image/index.js";
import { descriptor, type ImageIndex, MediaType, serialize } from "../manifest/index.js";
import { formatPlatform, type Platform, platformMatches } from "../platform/index.js";

/** Selects platforms of an index; a single platform gives the image, several a new index. */
export async function selectPlatforms(
  source: Artifact,
  platforms: readonly Platform[],
  what: string,
): Promise<Artifact> {
  if (source.kind !== "index") {
    if (platforms.length === 0) return source;
    const have = await imagePlatform(source);
    for (const p of platforms) {
      if (!platformMatches(p, have)) {
        throw new PolyarchError({
          code: "E_PLATFORM",
          message: `${what} is a single ${formatPlatform(have)} image, not ${formatPlatform(p)}`,
          hint: "Leave out --platform, or pick the platform the image has.",
        });
      }
    }
    return source;
  }
  if (platforms.length === 0) return source;
  const m = await source.manifest();
  const chosen: Descriptor[] = [];
  for (const p of platforms) {
    const { hit, have } = findPlatform(m.manifests, p);
    if (!hit) {
      throw new PolyarchError({
        code: "E_PLATFORM",
        message: `${what} has no ${formatPlatform(p)} image`,
        hint: `It has: ${have.join(", ") || "(no platforms)"}.`,
      });
    }
    if (!chosen.includes(hit)) chosen.push(hit);
  }
  if (chosen.length === 1) return source.child(chosen[0]!);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: m.mediaType ?? MediaType.OCI_INDEX,
    manifests: chosen.map(descriptor),
  };
  if (m.annotations) index.annotations = m.annotations;
  const mediaType = (await source.descriptor()).mediaType;
  return indexFromCore({ rawManifest: serialize(index), mediaType, child: (d) => source.child(d) });
}
