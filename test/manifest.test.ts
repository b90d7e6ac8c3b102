import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sha256, verifyBytes, verifyingStream } from "../src/digest/index.js";
import { MAX_MANIFEST_BYTES, MediaType, parseConfig, parseManifest } from "../src/manifest/index.js";

const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
const desc = { mediaType: MediaType.OCI_CONFIG, digest: `sha256:${"b".repeat(64)}`, size: 2 };

describe("manifest parsing", () => {
  it("reads OCI and Docker v2.2 manifests and indexes", () => {
    assert.equal(
      parseManifest(enc({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: desc, layers: [] }))
        .kind,
      "image",
    );
    assert.equal(
      parseManifest(enc({ schemaVersion: 2, mediaType: MediaType.DOCKER_MANIFEST, config: desc, layers: [] }))
        .kind,
      "image",
    );
    const list = parseManifest(
      enc({
        schemaVersion: 2,
        mediaType: MediaType.DOCKER_MANIFEST_LIST,
        manifests: [
          { ...desc, mediaType: MediaType.DOCKER_MANIFEST, platform: { os: "linux", architecture: "arm" } },
        ],
      }),
    );
    assert.equal(list.kind, "index");
    assert.equal(parseManifest(enc({ schemaVersion: 2, manifests: [] }), MediaType.OCI_INDEX).kind, "index");
  });
  it("refuses an ambiguous document (CVE-2021-41190)", () => {
    assert.throws(
      () => parseManifest(enc({ schemaVersion: 2, manifests: [], layers: [], config: desc })),
      /ambiguous/,
    );
  });
  it("refuses a mediaType that disagrees with the content type", () => {
    assert.throws(
      () =>
        parseManifest(
          enc({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: desc, layers: [] }),
          MediaType.OCI_INDEX,
        ),
      /differs/,
    );
  });
  it("refuses schema 1, unknown types, bad digests, negative sizes and oversize documents", () => {
    assert.throws(() => parseManifest(enc({ schemaVersion: 1, name: "x" })), /schema 1/);
    assert.throws(
      () => parseManifest(enc({ schemaVersion: 2, mediaType: "application/x-unknown" })),
      /unknown manifest media type/,
    );
    assert.throws(
      () =>
        parseManifest(
          enc({
            schemaVersion: 2,
            mediaType: MediaType.OCI_MANIFEST,
            config: { ...desc, digest: "sha256:zz" },
            layers: [],
          }),
        ),
      /config.digest/,
    );
    assert.throws(
      () =>
        parseManifest(
          enc({
            schemaVersion: 2,
            mediaType: MediaType.OCI_MANIFEST,
            config: { ...desc, size: -1 },
            layers: [],
          }),
        ),
      /config.size/,
    );
    assert.throws(() => parseManifest(Buffer.alloc(MAX_MANIFEST_BYTES + 1, 32)), /exceeds 4194304 bytes/);
    assert.throws(() => parseManifest(Buffer.from("{nope")), /not JSON/);
  });
  it("validates configs", () => {
    assert.throws(
      () => parseConfig(enc({ architecture: "amd64", os: "linux", rootfs: { type: "foo", diff_ids: [] } })),
      /rootfs.type/,
    );
    assert.equal(
      parseConfig(enc({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } })).os,
      "linux",
    );
  });
});

describe("digest verification", () => {
  const data = Buffer.from("hello world");
  const good = { digest: sha256(data), size: data.length };
  it("accepts matching bytes and streams", async () => {
    verifyBytes(data, good, "x");
    const out: Uint8Array[] = [];
    for await (const c of verifyingStream([data.subarray(0, 5), data.subarray(5)], good, "x")) out.push(c);
    assert.equal(Buffer.concat(out).toString(), "hello world");
  });
  it("names want and got on a flipped, truncated or extended stream", async () => {
    const flipped = Buffer.from(data);
    flipped[0] = 0x48;
    const drain = async (src: Uint8Array[]) => {
      for await (const _ of verifyingStream(src, good, "blob")) void _;
    };
    await assert.rejects(
      drain([flipped]),
      new RegExp(`digest mismatch for blob: want ${good.digest}, got sha256:[a-f0-9]{64} after 11 bytes`),
    );
    await assert.rejects(drain([data.subarray(0, 4)]), /size mismatch for blob: want 11 bytes, got 4/);
    await assert.rejects(drain([data, Buffer.from("!")]), /more than the 11 bytes/);
  });
});
