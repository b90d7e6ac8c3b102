/**
 * Re-derives every invariant of an artifact and compares (the test oracle, after
 * go-containerregistry's validate): manifest and config digests, each layer's digest and
 * size, each layer's diffID from the gunzipped bytes against config.rootfs.diff_ids, and
 * platforms in the index against the configs.
 */

import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { Digester, sha256 } from "../digest/index.js";
import type { Artifact } from "../image/index.js";
import { isIndexMediaType } from "../manifest/index.js";

export async function validateArtifact(a: Artifact): Promise<void> {
  const d = await a.descriptor();
  const raw = await a.rawManifest();
  if (sha256(raw) !== d.digest) throw new Error(`manifest digest ${d.digest} does not match its bytes`);
  if (a.kind === "index") {
    for (const c of (await a.manifest()).manifests) {
      const child = await a.child(c);
      await validateArtifact(child);
      if (!isIndexMediaType(c.mediaType) && child.kind === "image" && c.platform) {
        const cfg = await child.config();
        if (
          cfg.os !== c.platform.os ||
          cfg.architecture !== c.platform.architecture ||
          (cfg.variant ?? "") !== (c.platform.variant ?? "")
        ) {
          throw new Error(
            `index says ${JSON.stringify(c.platform)} but the config says ${cfg.os}/${cfg.architecture}/${cfg.variant ?? ""}`,
          );
        }
      }
    }
    return;
  }
  const m = await a.manifest();
  const cfgRaw = await a.rawConfig();
  if (sha256(cfgRaw) !== m.config.digest) throw new Error("config digest mismatch");
  const cfg = await a.config();
  if (cfg.rootfs.diff_ids.length !== m.layers.length) throw new Error("diff_ids and layers differ in number");
  for (const [i, l] of m.layers.entries()) {
    const gz = createGunzip();
    const u = new Digester();
    const done = (async () => {
      for await (const c of gz as AsyncIterable<Uint8Array>) u.update(c);
    })();
    // a.blob verifies the compressed digest and size as it streams.
    Readable.from(a.blob(l)).pipe(gz);
    await done;
    if (u.digest() !== cfg.rootfs.diff_ids[i])
      throw new Error(`layer ${i} diffID ${u.digest()} differs from config ${cfg.rootfs.diff_ids[i]}`);
  }
}
