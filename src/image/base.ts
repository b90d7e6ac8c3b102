import { PolyarchError } from "../errors.js";
import { isLayerMediaType } from "../manifest/index.js";
import { formatPlatform, type Platform, platformMatches } from "../platform/index.js";
import type { BaseImage } from "./assemble.js";
import { type Artifact, findPlatform, type Image, imagePlatform } from "./index.js";

/** A base image's layers and config, ready to build on; media types polyarch cannot extend are refused. */
export async function baseFromImage(image: Image, name?: string): Promise<BaseImage> {
  const m = await image.manifest();
  const c = await image.config();
  for (const l of m.layers) {
    if (!isLayerMediaType(l.mediaType)) {
      throw new PolyarchError({
        code: "E_MEDIA_TYPE",
        message: `cannot build on ${name ?? "the base"}: layer media type ${l.mediaType} is not an image layer`,
        hint: "Use a base image with tar, tar+gzip or tar+zstd layers.",
      });
    }
  }
  if (c.rootfs.diff_ids.length !== m.layers.length) {
    throw new PolyarchError({
      code: "E_MANIFEST",
      message: `cannot build on ${name ?? "the base"}: its config lists ${c.rootfs.diff_ids.length} diff_ids for ${m.layers.length} layers`,
      hint: "The base image is malformed; rebuild it.",
    });
  }
  const digest = (await image.descriptor()).digest;
  return {
    config: c,
    layers: m.layers.map((l, i) => ({ ...l, diffId: c.rootfs.diff_ids[i]!, open: () => image.blob(l) })),
    ...(name ? { name } : {}),
    digest,
  };
}

/** For each platform, the base's image for it; a platform the base lacks is an error naming those it has. */
export async function baseImagesFor(
  base: Artifact,
  platforms: readonly Platform[],
  name: string,
): Promise<Map<string, BaseImage>> {
  const out = new Map<string, BaseImage>();
  if (base.kind === "image") {
    const have = await imagePlatform(base);
    for (const p of platforms) {
      if (!platformMatches(p, have)) {
        throw new PolyarchError({
          code: "E_PLATFORM",
          message: `base ${name} has no ${formatPlatform(p)} image`,
          hint: `It is a single ${formatPlatform(have)} image; use a multi-platform base or build only ${formatPlatform(have)}.`,
        });
      }
      out.set(formatPlatform(p), await baseFromImage(base, name));
    }
    return out;
  }
  const m = await base.manifest();
  for (const p of platforms) {
    const { hit, have } = findPlatform(m.manifests, p);
    if (!hit) {
      throw new PolyarchError({
        code: "E_PLATFORM",
        message: `base ${name} has no ${formatPlatform(p)} image`,
        hint: `It has: ${have.join(", ") || "(no platforms)"}. Drop ${formatPlatform(p)} or choose another base.`,
      });
    }
    const child = await base.child(hit);
    if (child.kind !== "image")
      throw new PolyarchError({
        code: "E_MEDIA_TYPE",
        message: `base ${name}: ${hit.digest} is not an image`,
        hint: "Use a base whose index lists images.",
      });
    out.set(formatPlatform(p), await baseFromImage(child, name));
  }
  return out;
}
