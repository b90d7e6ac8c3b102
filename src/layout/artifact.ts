import type { Descriptor } from "../digest/index.js";
import { type Artifact, imageFromCore, indexFromCore } from "../image/index.js";
import { isIndexMediaType, MAX_MANIFEST_BYTES } from "../manifest/index.js";
import type { OciLayout } from "./index.js";

/** A view of an image or index stored in a layout; every byte read is verified. */
export async function layoutArtifact(layout: OciLayout, desc: Descriptor): Promise<Artifact> {
  const raw = await layout.readBlobBytes(desc, MAX_MANIFEST_BYTES);
  if (isIndexMediaType(desc.mediaType)) {
    return indexFromCore({
      rawManifest: raw,
      mediaType: desc.mediaType,
      child: (d) => layoutArtifact(layout, d),
    });
  }
  return imageFromCore({
    rawManifest: raw,
    mediaType: desc.mediaType,
    ...(desc.platform ? { platform: desc.platform } : {}),
    readBytes: (d, limit) => layout.readBlobBytes(d, limit),
    open: (d) => layout.readBlob(d),
  });
}
