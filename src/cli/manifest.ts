import { ManifestListStore, listDocument, resolveEntries } from "../copy/manifestlist.js";
import { PolyarchError } from "../errors.js";
import { parsePlatform } from "../platform/index.js";
import { RegistryPublisher } from "../publish/registry.js";
import { formatReference, parseReference, type Reference } from "../ref/index.js";
import { registryArtifact } from "../registry/index.js";
import type { CliIO } from "./_io.js";
import { makeClient } from "./_registry.js";
import { resolveCacheDir } from "./_resolve.js";

export interface ManifestFlags {
  amend?: boolean;
  insecure?: string[];
  os?: string;
  arch?: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string;
  purge?: boolean;
}

function store(io: CliIO): ManifestListStore {
  return new ManifestListStore(`${resolveCacheDir(io.env)}/manifest-lists`);
}

async function requireList(st: ManifestListStore, ref: Reference) {
  const l = await st.read(ref);
  if (!l) {
    throw new PolyarchError({
      code: "E_NOT_FOUND",
      message: `no local manifest list ${formatReference(ref)}`,
      hint: "Create it first: polyarch manifest create <list> <image>…",
    });
  }
  return l;
}

function listRef(s: string) {
  const r = parseReference(s);
  if (r.digest)
    throw new PolyarchError({
      code: "E_INPUT",
      message: `a manifest list is named by a tag, not a digest (${s})`,
      hint: "Write it as registry/repository:tag.",
    });
  return { ...r, tag: r.tag ?? "latest" };
}

export async function runManifestCreate(
  list: string,
  images: string[],
  flags: ManifestFlags,
  io: CliIO,
  signal?: AbortSignal,
): Promise<number> {
  const ref = listRef(list);
  const st = store(io);
  const existing = await st.read(ref);
  if (existing && !flags.amend) {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `manifest list ${formatReference(ref)} already exists`,
      hint: "Add --amend to add to it, or polyarch manifest rm it first.",
    });
  }
  const client = makeClient(io, flags.insecure);
  try {
    const entries = existing?.entries ?? [];
    for (const image of images) {
      const fresh = await resolveEntries(client, image, signal);
      for (const e of fresh) {
        const i = entries.findIndex((x) => x.descriptor.digest === e.descriptor.digest);
        if (i >= 0) entries[i] = e;
        else entries.push(e);
      }
    }
    await st.write({ ref: formatReference(ref), entries });
    io.stdout.write(`Created manifest list ${formatReference(ref)}\n`);
    return 0;
  } finally {
    await client.transport.close();
  }
}

export async function runManifestAnnotate(
  list: string,
  image: string,
  flags: ManifestFlags,
  io: CliIO,
): Promise<number> {
  const ref = listRef(list);
  const st = store(io);
  const l = await requireList(st, ref);
  const targets = l.entries.filter(
    (e) =>
      e.image === image ||
      e.source === image ||
      e.descriptor.digest === image ||
      e.source.endsWith(`@${image}`),
  );
  if (targets.length !== 1) {
    throw new PolyarchError({
      code: "E_NOT_FOUND",
      message: targets.length
        ? `${image} stands for ${targets.length} images in ${formatReference(ref)}`
        : `${image} is not in ${formatReference(ref)}`,
      hint: `Name one image as given to create, or by digest: ${l.entries.map((e) => e.source).join(", ")}.`,
    });
  }
  const e = targets[0]!;
  const cur = e.descriptor.platform ?? { os: "", architecture: "" };
  const os = flags.os ?? cur.os;
  const arch = flags.arch ?? cur.architecture;
  const variant = flags.variant ?? cur.variant;
  // Validate the combination like a --platform value (normalising aarch64 and friends).
  const p = parsePlatform([os, arch, variant].filter(Boolean).join("/"));
  if (flags.arch && flags.variant === undefined && flags.arch !== cur.architecture && p.variant === undefined)
    delete e.descriptor.platform?.variant;
  e.descriptor.platform = {
    ...p,
    ...(flags.osVersion
      ? { "os.version": flags.osVersion }
      : cur["os.version"]
        ? { "os.version": cur["os.version"] }
        : {}),
    ...(flags.osFeatures ? { "os.features": flags.osFeatures.split(",") } : {}),
  };
  await st.write(l);
  return 0;
}

export async function runManifestPush(
  list: string,
  flags: ManifestFlags,
  io: CliIO,
  signal?: AbortSignal,
): Promise<number> {
  const ref = listRef(list);
  const st = store(io);
  const l = await requireList(st, ref);
  const doc = listDocument(l);
  const client = makeClient(io, flags.insecure);
  const repo = { registry: ref.registry, repository: ref.repository };
  try {
    // Children first: images from other repositories are copied (mounted on the same registry).
    for (const e of l.entries) {
      const src = parseReference(e.source);
      if (src.registry === repo.registry && src.repository === repo.repository) continue;
      const image = await registryArtifact(client, src, e.descriptor, signal);
      const pub = new RegistryPublisher(client, repo, {
        mountFrom: src.registry === repo.registry ? [src.repository] : [],
      });
      await pub.publish(image, [], signal ? { signal } : {});
    }
    const digest = await client.putManifest(repo, ref.tag, doc.raw, doc.mediaType, signal);
    io.stdout.write(`${digest}\n`);
    if (flags.purge) await st.remove(ref);
    return 0;
  } finally {
    await client.transport.close();
  }
}

/** The local list in docker manifest inspect's shape. */
export async function runManifestInspect(list: string, io: CliIO): Promise<number> {
  const ref = listRef(list);
  const l = await store(io).read(ref);
  if (!l)
    throw new PolyarchError({
      code: "E_NOT_FOUND",
      message: `no local manifest list ${formatReference(ref)}`,
      hint: "For a pushed list use polyarch inspect <ref> --json.",
    });
  const doc = JSON.parse(Buffer.from(listDocument(l).raw).toString("utf8")) as {
    manifests: { mediaType: string; size: number; digest: string; platform?: object }[];
  };
  const shaped = {
    ...doc,
    manifests: doc.manifests.map((d) => ({
      mediaType: d.mediaType,
      size: d.size,
      digest: d.digest,
      ...(d.platform ? { platform: d.platform } : {}),
    })),
  };
  io.stdout.write(`${JSON.stringify(shaped, null, 3)}\n`);
  return 0;
}

export async function runManifestRm(list: string, io: CliIO): Promise<number> {
  await store(io).remove(listRef(list));
  return 0;
}
