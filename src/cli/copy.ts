import { selectPlatforms } from "../copy/index.js";
import { PolyarchError } from "../errors.js";
import { parsePlatformList } from "../platform/index.js";
import { LayoutPublisher } from "../publish/index.js";
import { RegistryPublisher } from "../publish/registry.js";
import { validateTag } from "../ref/index.js";
import { type CliIO, humanSize } from "./_io.js";
import { makeClient, openLocation } from "./_registry.js";
import { type Location, parseLocation } from "./_targets.js";

export interface CopyFlags {
  platform?: string[];
  insecure?: string[];
  json?: boolean;
  quiet?: boolean;
}

function tagOf(loc: Location): string | undefined {
  return loc.kind === "oci" ? loc.tag : loc.kind === "registry" ? loc.ref.tag : undefined;
}

/**
 * Copies an image or index between registries and layouts, digests unchanged (all platforms
 * unless --platform picks some). `push` is the same with a layout source and a registry target.
 */
export async function runCopy(
  srcArg: string,
  dstArg: string,
  flags: CopyFlags,
  io: CliIO,
  signal?: AbortSignal,
  verb = "copy",
): Promise<number> {
  const src = parseLocation(srcArg);
  const dst = parseLocation(dstArg);
  if (src.kind === "tarball" || dst.kind === "tarball") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `${verb} works between registries and OCI layouts, not tarballs`,
      hint: "Use oci:<dir>[:tag] or registry/repo:tag on both sides.",
    });
  }
  const platforms = flags.platform?.length ? parsePlatformList(flags.platform) : [];
  const tag = tagOf(dst) ?? tagOf(src) ?? "latest";
  validateTag(tag);
  const client = makeClient(io, flags.insecure);
  const log = (s: string) => {
    if (!flags.quiet) io.stderr.write(`${s}\n`);
  };
  try {
    const source = await selectPlatforms(await openLocation(src, client, signal), platforms, srcArg);
    const desc = await source.descriptor();
    if (dst.kind === "registry" && dst.ref.digest && dst.ref.digest !== desc.digest) {
      throw new PolyarchError({
        code: "E_DIGEST",
        message: `${dstArg} names digest ${dst.ref.digest}, but the copy has digest ${desc.digest}`,
        hint: "Leave the digest out of the destination, or copy all platforms to keep the source digest.",
      });
    }
    const opts = signal ? { signal } : {};
    let references: string[];
    if (dst.kind === "registry") {
      const repo = { registry: dst.ref.registry, repository: dst.ref.repository };
      const mountFrom =
        src.kind === "registry" &&
        src.ref.registry === repo.registry &&
        src.ref.repository !== repo.repository
          ? [src.ref.repository]
          : [];
      const pub = new RegistryPublisher(client, repo, { mountFrom });
      // Skip the work when the destination tag already points at this digest (mirror-style).
      const existing = dst.ref.digest
        ? undefined
        : await client.headManifest({ ...repo, tag }, signal).catch(() => undefined);
      if (existing?.digest === desc.digest) {
        log(`${repo.registry}/${repo.repository}:${tag} is up to date (${desc.digest})`);
        references = [`${repo.registry}/${repo.repository}:${tag}@${desc.digest}`];
      } else {
        references = (await pub.publish(source, dst.ref.digest ? [] : [tag], opts)).references;
        const st = pub.stats;
        log(
          `${verb}: ${st.blobsUploaded} blob${st.blobsUploaded === 1 ? "" : "s"} uploaded (${humanSize(st.bytesUploaded)}), ${st.blobsPresent} already there, ${st.blobsMounted} mounted; ${st.manifestsPut} manifests written`,
        );
      }
    } else {
      references = (await new LayoutPublisher(dst.dir).publish(source, [tag], opts)).references;
    }
    if (flags.json) io.stdout.write(`${JSON.stringify({ digest: desc.digest, references }, null, 2)}\n`);
    else for (const r of references) io.stdout.write(`${r}\n`);
    return 0;
  } finally {
    await client.transport.close();
  }
}
