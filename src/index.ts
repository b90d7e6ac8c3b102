/** polyarch's public library API. */

export { APP_DIR, DATA_DIR, GoBuilder, type GoBuildOptions } from "./builder/go/index.js";
export type { BuildEvent, Builder, BuildResult } from "./builder/index.js";
export {
  type Descriptor,
  type Digest,
  parseDigest,
  sha256,
  verifyBytes,
  verifyingStream,
} from "./digest/index.js";
export { type ErrorCode, PolyarchError } from "./errors.js";
export { assembleImage, assembleIndex } from "./image/assemble.js";
export {
  type Artifact,
  type Image,
  type Index,
  imageFromCore,
  indexFromCore,
  platformImages,
} from "./image/index.js";
export { type BlobSink, writeArtifact } from "./image/write.js";
export { diffIdOf, entriesFromDirectory, type LayerEntry, writeLayer } from "./layer/index.js";
export { layoutArtifact } from "./layout/artifact.js";
export { OciLayout } from "./layout/index.js";
export {
  Annotation,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MediaType,
  parseConfig,
  parseManifest,
} from "./manifest/index.js";
export {
  comparePlatforms,
  formatPlatform,
  type Platform,
  parsePlatform,
  parsePlatformList,
  platformMatches,
  toGoEnv,
} from "./platform/index.js";
export {
  checkWritable,
  LayoutPublisher,
  type Publisher,
  type PublishResult,
  TarballPublisher,
} from "./publish/index.js";
export { formatReference, parseReference, type Reference, validateTag } from "./ref/index.js";
export {
  type BuildRequest,
  type Destination,
  type ImageSettings,
  Orchestrator,
  type Published,
  type PublishRequest,
  type Toolchain,
} from "./orchestrate/index.js";
export { copy, mirrorOne } from "./orchestrate/copy.js";
