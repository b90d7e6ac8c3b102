/** polyarch's public library API. */
export { PolyarchError, type ErrorCode } from "./errors.js";
export { parseReference, formatReference, validateTag, type Reference } from "./ref/index.js";
export {
  parsePlatform,
  parsePlatformList,
  formatPlatform,
  toGoEnv,
  comparePlatforms,
  platformMatches,
  type Platform,
} from "./platform/index.js";
export {
  parseDigest,
  sha256,
  verifyBytes,
  verifyingStream,
  type Digest,
  type Descriptor,
} from "./digest/index.js";
export {
  MediaType,
  Annotation,
  parseManifest,
  parseConfig,
  type ImageManifest,
  type ImageIndex,
  type ImageConfig,
} from "./manifest/index.js";
export {
  type Image,
  type Index,
  type Artifact,
  imageFromCore,
  indexFromCore,
  platformImages,
} from "./image/index.js";
export { assembleImage, assembleIndex } from "./image/assemble.js";
export { writeArtifact, type BlobSink } from "./image/write.js";
export { writeLayer, diffIdOf, entriesFromDirectory, type LayerEntry } from "./layer/index.js";
export { OciLayout } from "./layout/index.js";
export { layoutArtifact } from "./layout/artifact.js";
export { GoBuilder, type GoBuildOptions, APP_DIR, DATA_DIR } from "./build/go/index.js";
export type { Builder, BuildEvent, BuildResult } from "./build/index.js";
export {
  LayoutPublisher,
  TarballPublisher,
  checkWritable,
  type Publisher,
  type PublishResult,
} from "./publish/index.js";
