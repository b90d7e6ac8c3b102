/**
 * Publishers take an artifact and names and store it somewhere. Every publisher writes
 * children before parents and moves names last, so a failure leaves old names where they were.
 */
import { access, constants, mkdir, open, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { type Descriptor, type Digest, verifyingStream } from "../digest/index.js";
import { addContext, PolyarchError } from "../errors.js";
import type { Artifact, Image } from "../image/index.js";
import { writeArtifact } from "../image/write.js";
import { OciLayout } from "../layout/index.js";
import { Annotation, descriptor, MediaType, serialize } from "../manifest/index.js";
import { comparePlatforms, formatPlatform, type Platform, platformMatches } from "../platform/index.js";

export interface PublishResult {
  digest: Digest;
  /** Human form of where it went, e.g. "oci:out/oci:latest@sha256:…". */
  references: string[];
  /** What a registry push did; absent for local outputs. */
  stats?: PushStats;
}

export interface PushStats {
  blobsUploaded: number;
  /** Of blobsUploaded, those sent while the build was still running (Orchestrator.build's stageTo). */
  blobsUploadedEarly: number;
  bytesUploaded: number;
  blobsPresent: number;
  blobsMounted: number;
  manifestsPut: number;
  manifestsPresent: number;
}

export interface Publisher {
  publish(
    artifact: Artifact,
    tags: readonly string[],
    opts?: { signal?: AbortSignal },
  ): Promise<PublishResult>;
}

function outputError(target: string, why: string, cause?: unknown): PolyarchError {
  return new PolyarchError({
    code: "E_OUTPUT",
    message: `cannot write to ${target}: ${why}`,
    hint: "Choose an output path in a directory you can write to.",
    cause,
  });
}

/**
 * Checks, without leaving anything behind, that `target` can be created or written: the
 * nearest existing ancestor must be a writable directory. Run before any build work.
 */
export async function checkWritable(target: string, kind: "dir" | "file"): Promise<void> {
  const abs = path.resolve(target);
  const st = await stat(abs).catch((e: NodeJS.ErrnoException) => {
    // ENOTDIR: some parent is a file; the parent walk below names it.
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return undefined;
    throw outputError(target, e.message, e);
  });
  if (st) {
    if (kind === "dir" && !st.isDirectory()) throw outputError(target, "it exists and is not a directory");
    if (kind === "file" && st.isDirectory()) throw outputError(target, "it is a directory");
    if (kind === "dir") {
      const names = await readdir(abs);
      if (names.length > 0 && !names.includes("oci-layout")) {
        throw new PolyarchError({
          code: "E_OUTPUT",
          message: `cannot write to ${target}: it is not empty and is not an OCI image layout`,
          hint: "Choose an empty or new directory, or an existing layout, so polyarch never mixes with other files.",
        });
      }
    }
  }
  let probeDir = kind === "dir" && st ? abs : path.dirname(abs);
  for (;;) {
    const s = await stat(probeDir).catch(() => undefined);
    if (s) {
      if (!s.isDirectory()) throw outputError(target, `${probeDir} is not a directory`);
      break;
    }
    const up = path.dirname(probeDir);
    if (up === probeDir) throw outputError(target, "no existing parent directory");
    probeDir = up;
  }
  const probe = path.join(probeDir, `.polyarch-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    await access(probeDir, constants.W_OK);
    const fh = await open(probe, "wx");
    await fh.close();
  } catch (e) {
    throw outputError(
      target,
      (e as NodeJS.ErrnoException).code === "EROFS" ? "the file system is read-only" : "permission denied",
      e,
    );
  } finally {
    await rm(probe, { force: true });
  }
}

/** Writes into an OCI image layout directory, tags recorded as org.opencontainers.image.ref.name. */
export class LayoutPublisher implements Publisher {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  async publish(
    artifact: Artifact,
    tags: readonly string[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<PublishResult> {
    const abs = path.resolve(this.dir);
    const dirExisted = await stat(abs).then(
      () => true,
      () => false,
    );
    let layout: OciLayout | undefined;
    const written = new Set<Digest>();
    try {
      layout = await OciLayout.openOrCreate(abs);
      const store = layout;
      await writeArtifact(
        {
          putBlob: (d, open) => store.putBlob(d, open()),
          putBlobFile: (d, file) => store.putBlobFile(d, file),
        },
        artifact,
        undefined,
        written,
      );
      opts.signal?.throwIfAborted();
      const desc = await artifact.descriptor();
      await layout.setTags(
        descriptor({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size }),
        tags,
        opts,
      );
      return {
        digest: desc.digest,
        references: (tags.length ? tags : [""]).map(
          (t) => `oci:${this.dir}${t ? `:${t}` : ""}@${desc.digest}`,
        ),
      };
    } catch (e) {
      // Take back what this publish added; never touch what was there before. Every write has
      // finished by now (writeArtifact waits), so nothing races the clean-up; a clean-up that
      // fails anyway never hides the error that caused it.
      if (layout) {
        try {
          await layout.removeBlobs(written);
          if (layout.created && (await layout.removeIfUnused()) && !dirExisted) await rmdir(abs);
        } catch {
          // what is left is a valid layout without the new tags; the next write reuses it
        }
      }
      throw addContext(e, `writing ${this.dir}`);
    }
  }
}

interface BlobEntry {
  desc: Pick<Descriptor, "digest" | "size">;
  open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Collects every blob an artifact reaches, children first, each once. */
async function collectBlobs(artifact: Artifact, out: Map<Digest, BlobEntry>, images: Image[]): Promise<void> {
  const desc = await artifact.descriptor();
  if (artifact.kind === "image") {
    images.push(artifact);
    const m = await artifact.manifest();
    for (const b of [m.config, ...m.layers])
      if (!out.has(b.digest)) out.set(b.digest, { desc: b, open: () => artifact.blob(b) });
  } else {
    for (const d of (await artifact.manifest()).manifests)
      await collectBlobs(await artifact.child(d), out, images);
  }
  const raw = await artifact.rawManifest();
  out.set(desc.digest, { desc, open: () => [raw] });
}

/**
 * Writes one tar file that is both an OCI image layout archive (`oci-archive:`, all platforms)
 * and a `docker load` archive (manifest.json naming one platform's image, since docker loads
 * one platform per tag). Written to a temp file and renamed: no partial tarball is left.
 */
export class TarballPublisher implements Publisher {
  readonly file: string;
  readonly #repository: string;
  readonly #mtime: number;
  readonly #dockerPlatform: Platform;
  constructor(file: string, opts: { repository: string; mtime: number; dockerPlatform: Platform }) {
    this.file = file;
    this.#repository = opts.repository;
    this.#mtime = opts.mtime;
    this.#dockerPlatform = opts.dockerPlatform;
  }

  async publish(
    artifact: Artifact,
    tags: readonly string[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<PublishResult> {
    const desc = await artifact.descriptor();
    const blobs = new Map<Digest, BlobEntry>();
    const images: Image[] = [];
    await collectBlobs(artifact, blobs, images);
    // docker load takes one image per tag: the requested platform, else the first in platform order.
    const withPlatform = await Promise.all(
      images.map(async (i) => ({ i, p: (await i.descriptor()).platform })),
    );
    withPlatform.sort((a, b) => (a.p && b.p ? comparePlatforms(a.p, b.p) : 0));
    const chosen =
      withPlatform.find((x) => x.p && platformMatches(this.#dockerPlatform, x.p)) ?? withPlatform[0];
    const files = new Map<string, BlobEntry | Uint8Array>();
    for (const [d, b] of blobs) files.set(`blobs/sha256/${d.slice("sha256:".length)}`, b);
    const topTags = tags.length ? tags : ["latest"];
    files.set("oci-layout", serialize({ imageLayoutVersion: "1.0.0" }));
    files.set(
      "index.json",
      serialize({
        schemaVersion: 2,
        mediaType: MediaType.OCI_INDEX,
        manifests: topTags.map((t) =>
          descriptor({
            mediaType: desc.mediaType,
            digest: desc.digest,
            size: desc.size,
            annotations: { [Annotation.REF_NAME]: t, "io.containerd.image.name": `${this.#repository}:${t}` },
          }),
        ),
      }),
    );
    if (chosen) {
      const m = await chosen.i.manifest();
      files.set(
        "manifest.json",
        serialize([
          {
            Config: `blobs/sha256/${m.config.digest.slice(7)}`,
            RepoTags: topTags.map((t) => `${this.#repository}:${t}`),
            Layers: m.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
          },
        ]),
      );
    }
    const abs = path.resolve(this.file);
    await mkdir(path.dirname(abs), { recursive: true });
    const tmp = `${abs}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const fh = await open(tmp, "wx", 0o644);
    try {
      const { pack: tarPack } = await import("tar-stream");
      const pack = tarPack();
      const mtime = new Date(this.#mtime * 1000);
      const h = { uid: 0, gid: 0, uname: "", gname: "", mtime };
      const producer = (async () => {
        pack.entry({ ...h, name: "blobs/", type: "directory", mode: 0o755 });
        pack.entry({ ...h, name: "blobs/sha256/", type: "directory", mode: 0o755 });
        for (const name of [...files.keys()].sort()) {
          opts.signal?.throwIfAborted();
          const v = files.get(name)!;
          if (v instanceof Uint8Array) {
            pack.entry({ ...h, name, type: "file", mode: 0o644, size: v.byteLength }, Buffer.from(v));
            continue;
          }
          await new Promise<void>((resolve, reject) => {
            const sink = pack.entry({ ...h, name, type: "file", mode: 0o444, size: v.desc.size }, (err) =>
              err ? reject(err) : resolve(),
            );
            const src = Readable.from(verifyingStream(v.open(), v.desc, `blob ${v.desc.digest}`));
            src.on("error", (e) => {
              sink.destroy(e);
              reject(e);
            });
            src.pipe(sink);
          });
        }
        pack.finalize();
      })();
      producer.catch((e) => pack.destroy(e as Error));
      for await (const chunk of pack as AsyncIterable<Uint8Array>) await fh.write(chunk);
      await producer;
      await fh.sync();
      await fh.close();
      await rename(tmp, abs);
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw addContext(e, `writing ${this.file}`);
    }
    const note = chosen?.p ? ` (docker load: ${formatPlatform(chosen.p)})` : "";
    return {
      digest: desc.digest,
      references: topTags.map((t) => `tarball:${this.file}:${t}@${desc.digest}${note}`),
    };
  }
}
