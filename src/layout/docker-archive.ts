/**
 * Reading a docker-archive (what `docker save` writes) into an OCI image layout, for images a
 * Docker engine built. The archive's manifest.json names the config and the layer tars, in
 * both shapes the engine has used: the legacy one (`<id>/layer.tar`, `<hex>.json`) and the
 * OCI-layout one of Docker 25+ (`blobs/sha256/<hex>`). Layers come uncompressed (or gzip,
 * which is undone); each is compressed with polyarch's encoder and its diffID checked against
 * the config's rootfs, so nothing unverified reaches a later step.
 */
import { createReadStream } from "node:fs";
import { lstat, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { createGunzip } from "node:zlib";
import { sha256 } from "../digest/index.js";
import { PolyarchError } from "../errors.js";
import { gzipLayer } from "../layer/index.js";
import { type ImageManifest, MediaType, parseConfig, serialize } from "../manifest/index.js";
import { OciLayout } from "./index.js";

const MAX_JSON = 4 * 1024 * 1024;

function archiveError(message: string): PolyarchError {
  return new PolyarchError({
    code: "E_LAYOUT",
    message,
    hint: "The builder's saved image is not a docker-archive polyarch can read; check the engine's version and disk space.",
  });
}

/** A path named inside the archive, refused when it climbs out of it or is not a regular file. */
async function member(root: string, name: unknown): Promise<string> {
  if (typeof name !== "string" || name === "" || path.isAbsolute(name) || name.split("/").includes(".."))
    throw archiveError(`the archive names an unsafe path ${JSON.stringify(name)}`);
  const file = path.join(root, name);
  const st = await lstat(file).catch(() => undefined);
  if (!st?.isFile()) throw archiveError(`the archive lacks ${name}`);
  return file;
}

async function isGzip(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/**
 * Writes the single image of an unpacked docker-archive in `root` into the layout at `dest`
 * under `tag`, and returns its manifest's digest.
 */
export async function importDockerArchive(root: string, dest: string, tag: string): Promise<string> {
  let entries: unknown;
  try {
    const raw = await readFile(await member(root, "manifest.json"));
    if (raw.length > MAX_JSON) throw archiveError("the archive's manifest.json is too large");
    entries = JSON.parse(raw.toString("utf8"));
  } catch (e) {
    if (e instanceof PolyarchError) throw e;
    throw archiveError(`the archive's manifest.json is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(entries) || entries.length !== 1)
    throw archiveError("the archive holds more or less than one image");
  const entry = entries[0] as { Config?: unknown; Layers?: unknown };
  if (!Array.isArray(entry.Layers)) throw archiveError("the archive's manifest.json lists no layers");
  const rawConfig = await readFile(await member(root, entry.Config));
  if (rawConfig.length > MAX_JSON) throw archiveError("the archive's image config is too large");
  const config = parseConfig(rawConfig);
  if (config.rootfs.diff_ids.length !== entry.Layers.length)
    throw archiveError(
      `the image config lists ${config.rootfs.diff_ids.length} diff_ids for ${entry.Layers.length} layers`,
    );
  const layout = await OciLayout.openOrCreate(dest);
  // Layers are compressed beside the layout, then moved in: the layout never holds a partial blob.
  const staging = `${dest}.staging`;
  await mkdir(staging, { recursive: true });
  const layers = [];
  for (const [i, name] of entry.Layers.entries()) {
    const file = await member(root, name);
    const source = (await isGzip(file))
      ? createReadStream(file).pipe(createGunzip())
      : createReadStream(file);
    const blob = await gzipLayer(source, path.join(staging, `layer-${i}`));
    if (blob.diffId !== config.rootfs.diff_ids[i])
      throw archiveError(
        `layer ${i} of the archive has diffID ${blob.diffId}, not the config's ${config.rootfs.diff_ids[i]}`,
      );
    // The digest was computed while writing: the blob moves into place instead of a second copy.
    const target = layout.blobPath(blob.digest);
    await mkdir(path.dirname(target), { recursive: true });
    await rename(blob.file, target);
    layers.push({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size });
  }
  const configDesc = { mediaType: MediaType.OCI_CONFIG, digest: sha256(rawConfig), size: rawConfig.length };
  await layout.putBlobBytes(configDesc, rawConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: configDesc,
    layers,
  };
  const rawManifest = serialize(manifest);
  const desc = { mediaType: MediaType.OCI_MANIFEST, digest: sha256(rawManifest), size: rawManifest.length };
  await layout.putBlobBytes(desc, rawManifest);
  await layout.setTags(desc, [tag]);
  await rm(staging, { recursive: true, force: true });
  return desc.digest;
}
