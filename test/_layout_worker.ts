/** A child process for layout tests: tags many times, or writes blobs until killed. */
import { randomBytes } from "node:crypto";
import { sha256 } from "../src/digest/index.js";
import { OciLayout } from "../src/layout/index.js";
import { MediaType } from "../src/manifest/index.js";

const [mode, dir, prefix, count] = process.argv.slice(2) as [string, string, string, string];
const layout = await OciLayout.open(dir);
for (let i = 0; i < Number(count); i++) {
  const data = mode === "write" ? randomBytes(256 * 1024 + i) : Buffer.from(`${prefix}-${i}`);
  const desc = { mediaType: MediaType.OCI_MANIFEST, digest: sha256(data), size: data.length };
  await layout.putBlobBytes(desc, data);
  await layout.setTags(desc, [`${prefix}-${i}`]);
}
