import { PolyarchError } from "../errors.js";
import type { Artifact, Image, Index } from "../image/index.js";
import { compressedSize, findPlatform } from "../image/index.js";
import { formatPlatform, parsePlatform } from "../platform/index.js";
import { MediaType } from "../manifest/index.js";
import { type CliIO, humanSize, table } from "./_io.js";
import { makeOrchestrator } from "./_world.js";
import { parseLocation } from "../orchestrate/location.js";

export interface InspectFlags {
  json?: boolean;
  raw?: boolean;
  verbose?: boolean;
  platform?: string;
  insecure?: string[];
}

/** docker manifest inspect prints a manifest list indented by three spaces… */
function dockerJson(v: unknown): string {
  return `${JSON.stringify(v, null, 3)}\n`;
}

/** …and a single manifest, or the --verbose list, indented by tabs (raw key order kept). */
function dockerTabs(v: unknown): string {
  return `${JSON.stringify(v, null, "\t")}\n`;
}

/** A platform in docker's key order: architecture, os, os.version, os.features, variant, features. */
function dockerPlatform(p: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ["architecture", "os", "os.version", "os.features", "variant", "features"])
    if (p[k] !== undefined) out[k] = p[k];
  return out;
}

/** A descriptor in the key order docker prints: mediaType, size, digest, platform. */
function dockerDescriptor(d: {
  mediaType: string;
  size: number;
  digest: string;
  platform?: object;
  annotations?: object;
}) {
  return {
    mediaType: d.mediaType,
    size: d.size,
    digest: d.digest,
    ...(d.platform ? { platform: dockerPlatform(d.platform as Record<string, unknown>) } : {}),
    ...(d.annotations ? { annotations: d.annotations } : {}),
  };
}

export async function runInspect(refArg: string, flags: InspectFlags, io: CliIO): Promise<number> {
  const loc = parseLocation(refArg);
  if (loc.kind === "tarball") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `cannot inspect ${refArg}`,
      hint: "Inspect an OCI layout (oci:<dir>[:tag]) or a registry reference (registry/repo:tag).",
    });
  }
  const orch = makeOrchestrator(io, flags.insecure ? { insecure: flags.insecure } : {});
  try {
    return await show(await orch.open(loc), refArg, flags, io);
  } finally {
    await orch.close();
  }
}

async function show(top: Artifact, refArg: string, flags: InspectFlags, io: CliIO): Promise<number> {
  let shown: Artifact = top;
  if (flags.platform) {
    const want = parsePlatform(flags.platform);
    if (top.kind !== "index")
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${refArg} is a single image, not an index`,
        hint: "Leave out --platform.",
      });
    const m = await top.manifest();
    const { hit, have } = findPlatform(m.manifests, want);
    if (!hit) {
      throw new PolyarchError({
        code: "E_NOT_FOUND",
        message: `${refArg} has no ${formatPlatform(want)} image`,
        hint: `It has: ${have.join(", ")}.`,
      });
    }
    shown = await top.child(hit);
  }
  if (flags.raw) {
    io.stdout.write(await shown.rawManifest());
    return 0;
  }
  if (shown.kind === "image" && flags.platform) {
    const manifest = await shown.manifest();
    const config = await shown.config();
    if (flags.json) io.stdout.write(dockerJson({ manifest, config }));
    else io.stdout.write(await describeImage(shown, refArg));
    return 0;
  }
  if (flags.json) {
    if (flags.verbose && shown.kind === "index") io.stdout.write(dockerTabs(await verbose(shown, refArg)));
    else if (shown.kind === "image")
      io.stdout.write(dockerTabs(JSON.parse(Buffer.from(await shown.rawManifest()).toString("utf8"))));
    else io.stdout.write(dockerJson(await dockerShape(shown)));
    return 0;
  }
  io.stdout.write(
    shown.kind === "index" ? await describeIndex(shown, refArg) : await describeImage(shown, refArg),
  );
  return 0;
}

async function dockerShape(a: Artifact): Promise<unknown> {
  if (a.kind === "index") {
    const m = await a.manifest();
    return {
      schemaVersion: m.schemaVersion,
      mediaType: m.mediaType ?? (await a.descriptor()).mediaType,
      // docker leaves the index's annotations out of this form.
      manifests: m.manifests.map(dockerDescriptor),
    };
  }
  const m = await a.manifest();
  return {
    schemaVersion: m.schemaVersion,
    mediaType: m.mediaType,
    config: dockerDescriptor(m.config),
    layers: m.layers.map(dockerDescriptor),
    ...(m.annotations ? { annotations: m.annotations } : {}),
  };
}

/** The shape of `docker manifest inspect --verbose` for a list: one entry per platform. */
async function verbose(index: Index, ref: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const d of (await index.manifest()).manifests) {
    const child = await index.child(d);
    // The manifest as stored (its key order kept), under SchemaV2Manifest for Docker's type.
    const manifest: unknown = JSON.parse(Buffer.from(await child.rawManifest()).toString("utf8"));
    out.push({
      Ref: `${ref}@${d.digest}`,
      Descriptor: {
        mediaType: d.mediaType,
        digest: d.digest,
        size: d.size,
        ...(d.platform ? { platform: dockerPlatform(d.platform as unknown as Record<string, unknown>) } : {}),
      },
      [d.mediaType === MediaType.DOCKER_MANIFEST ? "SchemaV2Manifest" : "OCIManifest"]: manifest,
    });
  }
  return out;
}

async function describeIndex(index: Index, ref: string): Promise<string> {
  const d = await index.descriptor();
  const m = await index.manifest();
  const rows = [["PLATFORM", "DIGEST", "SIZE"]];
  for (const c of m.manifests) {
    const child = await index.child(c);
    const size = child.kind === "image" ? await compressedSize(child) : c.size;
    rows.push([c.platform ? formatPlatform(c.platform) : "(none)", c.digest, humanSize(size)]);
  }
  const ann = m.annotations
    ? Object.entries(m.annotations)
        .map(([k, v]) => `  ${k}: ${v}\n`)
        .join("")
    : "";
  return `${ref}\n  ${d.mediaType}\n  ${d.digest} (${m.manifests.length} manifests)\n${ann}\n${table(rows)}\n`;
}

async function describeImage(image: Image, ref: string): Promise<string> {
  const d = await image.descriptor();
  const m = await image.manifest();
  const c = await image.config();
  const lines = [
    ref,
    `  ${d.mediaType}`,
    `  ${d.digest}`,
    `  platform:    ${formatPlatform({ os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) })}`,
    `  created:     ${c.created ?? "-"}`,
    `  entrypoint:  ${JSON.stringify(c.config?.Entrypoint ?? [])}`,
    `  cmd:         ${JSON.stringify(c.config?.Cmd ?? [])}`,
    `  user:        ${c.config?.User || "(root)"}`,
    `  workdir:     ${c.config?.WorkingDir ?? "/"}`,
    `  env:         ${(c.config?.Env ?? []).join(" ")}`,
    `  ports:       ${Object.keys(c.config?.ExposedPorts ?? {}).join(" ") || "-"}`,
    `  size:        ${humanSize(await compressedSize(image))}`,
    "",
    table([
      ["LAYER", "SIZE", "CREATED BY"],
      ...m.layers.map((l, i) => [l.digest, humanSize(l.size), c.history?.[i]?.created_by ?? ""]),
    ]),
  ];
  return `${lines.join("\n")}\n`;
}
