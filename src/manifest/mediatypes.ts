/** Media types polyarch reads and writes. OCI is written by default; Docker v2.2 is read too. */
export const MediaType = {
  OCI_MANIFEST: "application/vnd.oci.image.manifest.v1+json",
  OCI_INDEX: "application/vnd.oci.image.index.v1+json",
  OCI_CONFIG: "application/vnd.oci.image.config.v1+json",
  OCI_LAYER: "application/vnd.oci.image.layer.v1.tar",
  OCI_LAYER_GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
  OCI_LAYER_ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
  OCI_LAYER_NONDIST_GZIP: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  OCI_EMPTY: "application/vnd.oci.empty.v1+json",
  DOCKER_MANIFEST: "application/vnd.docker.distribution.manifest.v2+json",
  DOCKER_MANIFEST_LIST: "application/vnd.docker.distribution.manifest.list.v2+json",
  DOCKER_CONFIG: "application/vnd.docker.container.image.v1+json",
  DOCKER_LAYER_GZIP: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  DOCKER_FOREIGN_LAYER: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  DOCKER_SCHEMA1: "application/vnd.docker.distribution.manifest.v1+json",
  DOCKER_SCHEMA1_SIGNED: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OCI_INDEX || mt === MediaType.DOCKER_MANIFEST_LIST;
}

export function isImageMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OCI_MANIFEST || mt === MediaType.DOCKER_MANIFEST;
}

export function isLayerMediaType(mt: string): boolean {
  return (
    mt === MediaType.OCI_LAYER ||
    mt === MediaType.OCI_LAYER_GZIP ||
    mt === MediaType.OCI_LAYER_ZSTD ||
    mt === MediaType.OCI_LAYER_NONDIST_GZIP ||
    mt === MediaType.DOCKER_LAYER_GZIP ||
    mt === MediaType.DOCKER_FOREIGN_LAYER
  );
}

/** Manifest media types a registry GET should accept. */
export const MANIFEST_ACCEPT = [
  MediaType.OCI_INDEX,
  MediaType.OCI_MANIFEST,
  MediaType.DOCKER_MANIFEST_LIST,
  MediaType.DOCKER_MANIFEST,
] as const;
