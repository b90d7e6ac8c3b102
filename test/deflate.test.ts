import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import {
  BLOCK_SIZE,
  codeLengths,
  crc32,
  crc32Portable,
  deflateSegment,
  GZIP_HEADER,
  GzipEncoder,
  gzip,
  gzipTrailer,
  SEGMENT_SIZE,
} from "../src/layer/deflate.js";
import { noise, pieces } from "./_data.js";

/** Something shaped like a program: instructions from a small vocabulary, strings, zero runs. */
function programLike(seed: number, n: number): Buffer {
  const words = noise(seed, 4096);
  const r = noise(seed + 1, n);
  const out = Buffer.alloc(n);
  let i = 0;
  while (i < n) {
    const k = r[i]!;
    if (k < 40) {
      const run = Math.min(n - i, k * 3);
      out.fill(0, i, i + run);
      i += Math.max(1, run);
    } else if (k < 200) {
      const at = (r[i]! * 16 + (r[Math.min(n - 1, i + 1)]! & 15)) % (words.length - 12);
      const len = Math.min(n - i, 3 + (k % 10));
      words.copy(out, i, at, at + len);
      i += len;
    } else {
      out[i] = r[Math.min(n - 1, i + 2)]!;
      i++;
    }
  }
  return out;
}

const cases: [string, Buffer][] = [
  ["empty", Buffer.alloc(0)],
  ["one byte", Buffer.from("x")],
  ["three bytes", Buffer.from("abc")],
  ["all zeros (max-length matches)", Buffer.alloc(700_000)],
  ["noise (stored blocks)", noise(1, 300_000)],
  ["text", Buffer.from("GET /healthz 200\nGET /readyz 503 Ready NOK\n".repeat(20_000))],
  ["program-like", programLike(3, 1_000_000)],
  ["exactly one block", programLike(4, BLOCK_SIZE)],
  ["one block and a byte", programLike(5, BLOCK_SIZE + 1)],
  ["two blocks", programLike(6, 2 * BLOCK_SIZE)],
  // A 40 KiB pattern repeated: its copies sit beyond the 32 KiB window, so they must not match.
  ["repeats just beyond the window", Buffer.concat([noise(7, 40_000), noise(7, 40_000), noise(7, 40_000)])],
  // An 8 KiB pattern repeated: matches at short distances across block boundaries.
  ["repeats inside the window", Buffer.concat(Array.from({ length: 40 }, () => noise(8, 8192)))],
  ["noise then zeros", Buffer.concat([noise(9, BLOCK_SIZE - 3), Buffer.alloc(BLOCK_SIZE + 5)])],
  // Short with zero runs and bytes ≥ 144: a fixed-Huffman block with 9-bit literal codes.
  [
    "an ELF header (fixed Huffman, high literals)",
    Buffer.from(
      "7f454c4602010100000000000000000002003e0001000000a0a5480000000000400000000000000090010000000000000000",
      "hex",
    ),
  ],
  ["three segments and a bit", programLike(13, 3 * SEGMENT_SIZE + 777)],
];

function chunked(data: Buffer, sizes: number[]): Buffer {
  const parts: Uint8Array[] = [];
  const enc = new GzipEncoder();
  for (const piece of pieces(data, sizes)) {
    enc.push(piece);
    parts.push(...enc.take());
  }
  enc.finish();
  return Buffer.concat([...parts, ...enc.take()]);
}

describe("gzip encoder", () => {
  it("round-trips every case through Node's zlib", () => {
    for (const [name, data] of cases) {
      const z = gzip(data);
      assert.deepEqual(gunzipSync(z), data, name);
      if (data.length > 1000 && !name.startsWith("noise") && !name.includes("beyond")) {
        assert.ok(z.length < data.length * 0.7, `${name} compresses (${z.length} of ${data.length})`);
      }
    }
  });

  it("is read back by GNU gzip, an inflater independent of zlib", () => {
    for (const [name, data] of cases) {
      const r = spawnSync("gzip", ["-dc"], { input: gzip(data), maxBuffer: 64 * 1024 * 1024 });
      assert.equal(r.status, 0, `${name}: ${r.stderr.toString()}`);
      assert.deepEqual(r.stdout, data, name);
    }
  });

  it("gives the same bytes whatever the chunking of the input", () => {
    const data = programLike(11, 3 * BLOCK_SIZE + 123);
    const whole = gzip(data);
    for (const sizes of [
      [1],
      [7, 4093],
      [BLOCK_SIZE],
      [BLOCK_SIZE + 1],
      [3 * BLOCK_SIZE + 123],
      [65535, 2],
    ]) {
      assert.deepEqual(chunked(data, sizes), whole, `chunks of ${sizes.join("/")}`);
    }
  });

  it("picks the fixed code for a short block, and codes its 9-bit literals right", () => {
    const data = cases.find(([n]) => n.startsWith("an ELF header"))![1];
    const z = gzip(data);
    assert.equal((z[10]! >> 1) & 3, 1, "a fixed-Huffman block");
    assert.deepEqual(gunzipSync(z), data);
  });

  it("compresses segments apart into exactly the sequential bytes (what the worker pool relies on)", () => {
    const big = programLike(14, 3 * SEGMENT_SIZE + 777);
    for (const n of [100, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 2 * SEGMENT_SIZE, big.length]) {
      const data = big.subarray(0, n);
      const parts: Uint8Array[] = [GZIP_HEADER];
      for (let s = 0; ; s += SEGMENT_SIZE) {
        const last = s + SEGMENT_SIZE >= n;
        const dict = data.subarray(Math.max(0, s - 32 * 1024), s);
        parts.push(deflateSegment(dict, data.subarray(s, Math.min(n, s + SEGMENT_SIZE)), last));
        if (last) break;
      }
      parts.push(gzipTrailer(crc32(data, 0), n));
      const joined = Buffer.concat(parts);
      assert.deepEqual(joined, gzip(data), `${n} bytes`);
      assert.deepEqual(gunzipSync(joined), Buffer.from(data), `${n} bytes round-trip`);
    }
    assert.throws(() => deflateSegment(new Uint8Array(0), new Uint8Array(10), false), /must be whole/);
  });

  it("writes a segment into the buffer it is given, or, when that is too small, into a new one with the same bytes", () => {
    const data = programLike(15, SEGMENT_SIZE);
    const dict = programLike(16, 32 * 1024);
    const alone = Buffer.from(deflateSegment(dict, data, false));
    const roomy = new Uint8Array(SEGMENT_SIZE + 4096);
    const inRoomy = deflateSegment(dict, data, false, roomy);
    assert.equal(inRoomy.buffer, roomy.buffer, "written into the given buffer");
    assert.deepEqual(Buffer.from(inRoomy), alone);
    const small = new Uint8Array(1000);
    const overflow = deflateSegment(dict, data, false, small);
    assert.notEqual(overflow.buffer, small.buffer);
    assert.deepEqual(Buffer.from(overflow), alone, "what did not fit is joined in order");
  });

  it("writes a fixed gzip frame: no name, mtime 0, OS 3, CRC-32 and size trailer", () => {
    const data = Buffer.from("polyarch");
    const z = gzip(data);
    assert.deepEqual([...z.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    assert.equal(z.readUInt32LE(z.length - 8), crc32Portable(data, 0));
    assert.equal(z.readUInt32LE(z.length - 4), data.length);
  });

  it("pins its output: a change of these digests is a change of every layer digest", () => {
    const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex").slice(0, 16);
    assert.deepEqual(
      {
        empty: digest(gzip(Buffer.alloc(0))),
        text: digest(gzip(cases[5]![1])),
        program: digest(gzip(cases[6]![1])),
        noise: digest(gzip(cases[4]![1])),
      },
      GOLDEN,
    );
  });

  it("uses Node's CRC-32 where there is one and gets the same values without it", () => {
    const data = programLike(12, 100_000);
    assert.equal(crc32(data, 0), crc32Portable(data, 0));
    assert.equal(crc32(data.subarray(500), crc32(data.subarray(0, 500), 0)), crc32(data, 0));
    assert.equal(crc32Portable(Buffer.from("123456789"), 0), 0xcbf43926);
  });
});

describe("length-limited Huffman code lengths", () => {
  const kraft = (lens: Uint8Array, max: number) => {
    let k = 0;
    for (const l of lens) if (l) k += 2 ** (max - l);
    return k;
  };
  const cost = (freq: number[], lens: Uint8Array) => freq.reduce((s, f, i) => s + f * lens[i]!, 0);

  it("stays within the limit and gives complete codes, even for Fibonacci frequencies", () => {
    const fib = [1, 1];
    while (fib.length < 30) fib.push(fib.at(-1)! + fib.at(-2)!);
    for (const max of [7, 15]) {
      const lens = new Uint8Array(30);
      codeLengths(fib, max, lens);
      assert.ok(Math.max(...lens) <= max, `max length ${Math.max(...lens)} ≤ ${max}`);
      assert.equal(kraft(lens, max), 2 ** max, "complete code");
    }
  });

  it("matches plain Huffman's cost when the limit does not bind", () => {
    const freq = [45, 13, 12, 16, 9, 5, 0, 0, 1];
    const lens = new Uint8Array(freq.length);
    codeLengths(freq, 15, lens);
    // Huffman's optimum for these frequencies (by hand: 45·1 + 13·3 + 12·3 + 16·3 + 9·4 + 5·5 + 1·5).
    assert.equal(cost(freq, lens), 234);
    assert.equal(kraft(lens, 15), 2 ** 15);
    assert.equal(lens[6], 0);
  });

  it("gives a lone symbol a complete two-code alphabet", () => {
    const lens = new Uint8Array(30);
    codeLengths(
      Array.from({ length: 30 }, (_, i) => (i === 5 ? 9 : 0)),
      15,
      lens,
    );
    assert.equal(lens[5], 1);
    assert.equal(kraft(lens, 15), 2 ** 15);
    codeLengths(new Array<number>(30).fill(0), 15, lens);
    assert.equal(kraft(lens, 15), 2 ** 15);
  });
});

const GOLDEN = {
  empty: "59869db34853933b",
  text: "97808c5b44710aa8",
  program: "f9c9b3b3da4c6e78",
  noise: "839d4328c8245f9a",
};
