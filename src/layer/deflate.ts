/**
 * polyarch's own gzip encoder (RFC 1951 deflate inside an RFC 1952 gzip frame).
 *
 * Why not a library: layer digests must not change with the runtime (Node's bundled zlib has
 * changed its output between releases) and must be cheap enough that compressing six Go
 * binaries does not dominate a build. The pinned JS compressors on npm are deterministic but
 * slow (~16 MB/s for fflate at any level). This encoder is written for one job — fast,
 * reproducible layers — in the spirit of zlib level 1 / Go's `gzip.BestSpeed` (what ko and
 * go-containerregistry use for layers):
 *
 * - greedy LZ77 over a 32 KiB window with a single-probe hash of 4 bytes, and the "skip
 *   ahead" heuristic of LZ4/Snappy so incompressible stretches cost little;
 * - input is cut into blocks of exactly BLOCK_SIZE bytes, whatever sizes `push` is called
 *   with, so the bytes out depend only on the bytes in;
 * - each block is written in whichever of dynamic Huffman, fixed Huffman or stored form is
 *   smallest, with optimal length-limited codes (package-merge);
 * - input is also cut into segments of exactly SEGMENT_SIZE bytes: at each boundary the
 *   stream is byte-aligned with an empty stored block (zlib's sync flush) and the match table
 *   is rebuilt from the WINDOW bytes before it, exactly as an encoder primed with those bytes
 *   as its dictionary would start (pigz's scheme). So segments can be compressed apart, in
 *   worker threads, and joined into the very bytes one sequential encoder writes;
 * - a fixed gzip header: no name, mtime 0, OS 3 (Unix).
 *
 * Everything is integer arithmetic with deterministic tie-breaks, so the output is a pure
 * function of the input — identical on every Node version and machine. Any change here is
 * a change of output format: the golden digests in test/layer.test.ts must then change too.
 */
import zlib from "node:zlib";

/**
 * Names this encoder's output format. Change it with any change that changes output bytes:
 * caches of compressed layers are keyed by it.
 */
export const ENCODER_ID = "polyarch-gzip-2";
/** Bytes of input per deflate block. Part of the output format. */
export const BLOCK_SIZE = 64 * 1024;
/** Bytes of input per independently compressible segment (a multiple of BLOCK_SIZE). Part of the output format. */
export const SEGMENT_SIZE = 16 * BLOCK_SIZE;
/** The 10-byte gzip header: ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (Unix). */
export const GZIP_HEADER = Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3);
const WINDOW = 32 * 1024;
const HASH_BITS = 15;
const HASH_SHIFT = 32 - HASH_BITS;
const MIN_MATCH = 4;
const MAX_MATCH = 258;
/** Global positions are rebased before they could overflow an Int32. */
const REBASE_AT = 1 << 30;
const EMPTY = -(2 ** 31);

// ---- RFC 1951 tables, derived from the spec's base/extra rules ----
/** Length symbol (257…285) for each match length − 3. */
const LEN_SYM = new Uint16Array(256);
const LEN_BASE = new Uint16Array(29);
const LEN_EXTRA = new Uint8Array(29);
/** Distance symbol for distance − 1 < 256, then for ((distance − 1) >> 7) at offset 256. */
const DIST_SYM = new Uint8Array(512);
const DIST_BASE = new Uint16Array(30);
const DIST_EXTRA = new Uint8Array(30);
{
  let base = 3;
  for (let k = 0; k < 28; k++) {
    LEN_EXTRA[k] = k < 8 ? 0 : (k >> 2) - 1;
    LEN_BASE[k] = base;
    for (let j = 0; j < 1 << LEN_EXTRA[k]! && base + j <= 258; j++) LEN_SYM[base + j - 3] = 257 + k;
    base += 1 << LEN_EXTRA[k]!;
  }
  LEN_BASE[28] = 258;
  LEN_EXTRA[28] = 0;
  LEN_SYM[255] = 285;
  base = 1;
  for (let k = 0; k < 30; k++) {
    DIST_EXTRA[k] = k < 4 ? 0 : (k >> 1) - 1;
    DIST_BASE[k] = base;
    const n = 1 << DIST_EXTRA[k]!;
    for (let d = base; d < base + n; d++) {
      if (d <= 256) DIST_SYM[d - 1] = k;
      else DIST_SYM[256 + ((d - 1) >> 7)] = k;
    }
    base += n;
  }
}
function distSym(d: number): number {
  return d <= 256 ? DIST_SYM[d - 1]! : DIST_SYM[256 + ((d - 1) >> 7)]!;
}
/** The order code-length code lengths are sent in (RFC 1951 3.2.7). */
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const FIXED_LL = new Uint8Array(288);
FIXED_LL.fill(8, 0, 144);
FIXED_LL.fill(9, 144, 256);
FIXED_LL.fill(7, 256, 280);
FIXED_LL.fill(8, 280, 288);
const FIXED_D = new Uint8Array(30).fill(5);

// Scratch for codeLengths (n ≤ 286 symbols, so lists of at most 570 items, 15 levels).
const PM_KEYS = new Float64Array(286);
const PM_SYMS = new Int32Array(286);
const PM_LEAF = new Float64Array(286);
const PM_PREV = new Float64Array(572);
const PM_CUR = new Float64Array(572);
const PM_CUM = new Int32Array(15 * 573);

/**
 * Optimal code lengths of at most `maxLen` bits for the symbols with non-zero frequency
 * (package-merge). Ties are broken by symbol number, so the result is deterministic. A code
 * with one used symbol gets a second, unused one so that every code is complete (inflaters
 * such as zlib refuse most incomplete codes).
 */
export function codeLengths(freq: ArrayLike<number>, maxLen: number, lens: Uint8Array): void {
  lens.fill(0);
  let m = 0;
  // Sort by (frequency, symbol) with one numeric key: frequencies stay below 2^32.
  for (let s = 0; s < freq.length; s++) if (freq[s]! > 0) PM_KEYS[m++] = freq[s]! * 512 + s;
  if (m < 2) {
    const a = m === 1 ? PM_KEYS[0]! % 512 : 0;
    lens[a] = 1;
    lens[a === 0 ? 1 : 0] = 1;
    return;
  }
  const keys = PM_KEYS.subarray(0, m).sort();
  for (let k = 0; k < m; k++) {
    PM_SYMS[k] = keys[k]! % 512;
    PM_LEAF[k] = Math.floor(keys[k]! / 512);
  }
  const cap = 2 * m - 2;
  // Level 0 is the leaves; each later level merges the leaves with pairs ("packages") of the
  // level before, keeping the cheapest `cap` items. PM_CUM row l, column j: leaves among the
  // first j items of level l.
  let prev = PM_PREV;
  let cur = PM_CUR;
  let prevLen = Math.min(m, cap);
  prev.set(PM_LEAF.subarray(0, prevLen));
  const stride = 573;
  for (let level = 1; level < maxLen; level++) {
    const row = level * stride;
    const packs = prevLen >> 1;
    let li = 0;
    let pi = 0;
    let n = 0;
    PM_CUM[row] = 0;
    while (n < cap && (li < m || pi < packs)) {
      if (pi >= packs || (li < m && PM_LEAF[li]! <= prev[2 * pi]! + prev[2 * pi + 1]!)) {
        cur[n++] = PM_LEAF[li++]!;
      } else {
        cur[n++] = prev[2 * pi]! + prev[2 * pi + 1]!;
        pi++;
      }
      PM_CUM[row + n] = li;
    }
    const t = prev;
    prev = cur;
    cur = t;
    prevLen = n;
  }
  // Walk back from the last level: the first `sel` items are chosen; each leaf among them
  // adds one bit to its symbol, each package selects two items of the level below.
  let sel = cap;
  for (let level = maxLen - 1; level >= 1; level--) {
    const leaves = PM_CUM[level * stride + sel]!;
    for (let k = 0; k < leaves; k++) lens[PM_SYMS[k]!]!++;
    sel = 2 * (sel - leaves);
  }
  for (let k = 0; k < sel; k++) lens[PM_SYMS[k]!]!++;
}

/**
 * Canonical Huffman codes for `lens`, bit-reversed because deflate packs bits LSB first, each
 * packed with its length (code | length << 16) so a symbol costs one lookup to write.
 */
function canonicalCodes(lens: Uint8Array, n: number, codes: Int32Array): void {
  const count = new Uint16Array(16);
  for (let i = 0; i < n; i++) count[lens[i]!]!++;
  count[0] = 0;
  const next = new Uint16Array(16);
  let code = 0;
  for (let b = 1; b < 16; b++) {
    code = (code + count[b - 1]!) << 1;
    next[b] = code;
  }
  for (let i = 0; i < n; i++) {
    const len = lens[i]!;
    if (!len) continue;
    let c = next[len]!++;
    let r = 0;
    for (let b = 0; b < len; b++) {
      r = (r << 1) | (c & 1);
      c >>= 1;
    }
    codes[i] = r | (len << 16);
  }
}

// ---- CRC-32 (IEEE): a definition, not an implementation choice, so Node's is safe to use ----
let CRC_TABLE: Int32Array | undefined;
function crc32js(data: Uint8Array, crc: number): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c;
    }
  }
  let c = ~crc;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
const nodeCrc = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
/** CRC-32 of `data` continuing from `crc` (zlib.crc32 where Node has it, Node ≥ 20.15). */
export const crc32: (data: Uint8Array, crc?: number) => number = nodeCrc
  ? (d, v = 0) => nodeCrc(d, v)
  : (d, v = 0) => crc32js(d, v);
export { crc32js as crc32Portable };

/**
 * A streaming gzip encoder. `push` any number of chunks of any size, then `finish` once;
 * `take` returns the compressed bytes written since the last `take`, in order (each array is
 * fresh and may be kept).
 *
 * The output is collected rather than handed to a callback: a callback differs per encoder,
 * and V8 inlines the call into the block writer, so every new encoder (one per segment in a
 * worker) threw the optimised code away ("wrong call target") — measured at half the speed.
 */
export class GzipEncoder {
  #chunks: Uint8Array[] = [];
  /** History (up to WINDOW bytes before #pos) followed by input not yet compressed. */
  #buf = new Uint8Array(WINDOW + 2 * BLOCK_SIZE);
  /** Start of the bytes not yet compressed, and end of the bytes received, in #buf. */
  #pos = 0;
  #end = 0;
  /** Global stream position of #buf[0], minus whatever rebasing removed. */
  #offset = 0;
  /** 4-byte little-endian reads of #buf. */
  #dv = new DataView(this.#buf.buffer);
  /**
   * The match table, two slots per hash: [2h] the global position last seen with that hash
   * (EMPTY if none), [2h + 1] the 4 input bytes there, so a miss costs one comparison and
   * one cache line.
   */
  #table = new Int32Array(2 << HASH_BITS).fill(EMPTY);
  #tokens = new Int32Array(BLOCK_SIZE + 1);
  #lf = new Uint32Array(286);
  #df = new Uint32Array(30);
  #out = new Uint8Array(BLOCK_SIZE + 1024);
  #op = 0;
  #bits = 0;
  #nbits = 0;
  #crc = 0;
  #size = 0;
  #done = false;
  // Per-block scratch, kept to avoid allocation.
  #llLen = new Uint8Array(286);
  #dLen = new Uint8Array(30);
  /** Packed codes (see canonicalCodes) of the block being written. */
  #llCode = new Int32Array(288);
  #dCode = new Int32Array(30);

  /** Raw deflate of one segment (no gzip frame), started from a dictionary: see deflateSegment. */
  #raw: boolean;
  /** Input bytes compressed so far (segment boundaries are multiples of SEGMENT_SIZE). */
  #consumed = 0;

  constructor(raw?: { dictionary: Uint8Array }) {
    this.#raw = raw !== undefined;
    if (raw) this.#startRaw(raw.dictionary);
    else {
      this.#out.set(GZIP_HEADER);
      this.#op = GZIP_HEADER.length;
    }
  }

  #startRaw(dictionary: Uint8Array): void {
    const dict = dictionary.subarray(Math.max(0, dictionary.length - WINDOW));
    this.#buf.set(dict, 0);
    this.#pos = this.#end = dict.length;
    this.#prime();
  }

  /**
   * Starts over as a raw encoder of a new segment from `dictionary`, keeping this encoder's
   * buffers (about 1 MB): a worker compressing segment after segment makes no garbage for
   * them. The bytes out are those of a new encoder.
   */
  restartRaw(dictionary: Uint8Array): void {
    this.#raw = true;
    this.#offset = 0;
    this.#op = 0;
    this.#bits = 0;
    this.#nbits = 0;
    this.#crc = 0;
    this.#size = 0;
    this.#done = false;
    this.#consumed = 0;
    this.#chunks = [];
    this.#startRaw(dictionary);
  }

  /** Enters the WINDOW bytes before #pos into an empty match table, in order (deflateSetDictionary). */
  #prime(): void {
    const dv = this.#dv;
    const table = this.#table.fill(EMPTY);
    const off = this.#offset;
    for (let j = Math.max(0, this.#pos - WINDOW); j <= this.#pos - MIN_MATCH; j++) {
      const v = dv.getInt32(j, true);
      const h = (Math.imul(v, 0x1e35a7bd) >>> HASH_SHIFT) << 1;
      table[h] = j + off;
      table[h + 1] = v;
    }
  }

  /** A segment boundary with more input to come: byte-align with an empty stored block, then re-prime. */
  #syncFlush(): void {
    this.#put(0, 1);
    this.#put(0, 2);
    if (this.#nbits > 0) this.#put(0, 8 - this.#nbits);
    this.#out.set([0, 0, 0xff, 0xff], this.#op);
    this.#op += 4;
    this.#emit();
    this.#prime();
  }

  push(data: Uint8Array): void {
    if (this.#done) throw new Error("GzipEncoder: push after finish");
    let off = 0;
    while (off < data.length) {
      if (this.#end === this.#buf.length) this.#slide();
      const n = Math.min(data.length - off, this.#buf.length - this.#end);
      this.#buf.set(data.subarray(off, off + n), this.#end);
      this.#end += n;
      off += n;
      // Strictly more than a block pending: the last block is always compressed by finish(),
      // so it can carry BFINAL whatever the chunking was.
      while (this.#end - this.#pos > BLOCK_SIZE) {
        this.#block(this.#pos, this.#pos + BLOCK_SIZE, false);
        this.#pos += BLOCK_SIZE;
        this.#consumed += BLOCK_SIZE;
        // More input follows (strictly more than a block was pending): a boundary gets its flush.
        if (this.#consumed % SEGMENT_SIZE === 0) this.#syncFlush();
      }
    }
  }

  /**
   * For deflateSegment: `data` is the last block of a segment that is not the stream's last;
   * compresses it as a non-final block and writes the boundary's sync flush.
   */
  flushSegment(data: Uint8Array): void {
    this.push(data);
    if (this.#end - this.#pos !== BLOCK_SIZE)
      throw new Error("GzipEncoder: flushSegment off a block boundary");
    this.#block(this.#pos, this.#end, false);
    this.#pos = this.#end;
    this.#put(0, 1);
    this.#put(0, 2);
    if (this.#nbits > 0) this.#put(0, 8 - this.#nbits);
    this.#out.set([0, 0, 0xff, 0xff], this.#op);
    this.#op += 4;
    this.#done = true;
    this.#emit();
  }

  finish(): void {
    if (this.#done) throw new Error("GzipEncoder: finish called twice");
    this.#done = true;
    this.#block(this.#pos, this.#end, true);
    this.#pos = this.#end;
    if (this.#nbits > 0) this.#out[this.#op++] = this.#bits & 0xff;
    this.#bits = 0;
    this.#nbits = 0;
    if (this.#raw) return this.#emit();
    const t = [this.#crc, this.#size];
    for (const v of t) {
      this.#out[this.#op++] = v & 0xff;
      this.#out[this.#op++] = (v >>> 8) & 0xff;
      this.#out[this.#op++] = (v >>> 16) & 0xff;
      this.#out[this.#op++] = (v >>> 24) & 0xff;
    }
    this.#emit();
  }

  /** Keeps the last WINDOW bytes of history and moves them to the front of the buffer. */
  #slide(): void {
    const shift = this.#pos - WINDOW;
    if (shift <= 0) throw new Error("GzipEncoder: buffer full without a complete block");
    this.#buf.copyWithin(0, shift, this.#end);
    this.#pos -= shift;
    this.#end -= shift;
    this.#offset += shift;
    if (this.#offset >= REBASE_AT) {
      const t = this.#table;
      const by = this.#offset;
      for (let i = 0; i < t.length; i += 2) t[i] = t[i]! - by < -REBASE_AT ? EMPTY : t[i]! - by;
      this.#offset = 0;
    }
  }

  #emit(): void {
    if (this.#op === 0) return;
    const sink = this.#sink;
    if (sink && this.#chunks.length === 0 && this.#sunk + this.#op <= sink.length) {
      sink.set(this.#out.subarray(0, this.#op), this.#sunk);
      this.#sunk += this.#op;
    } else this.#chunks.push(this.#out.slice(0, this.#op));
    this.#op = 0;
  }

  /**
   * A buffer the compressed bytes are copied into, from the start, while they fit (what does
   * not fit is collected as usual); `undefined` stops it. Returns how many bytes the previous
   * sink received. A worker compressing segment after segment so makes no per-block arrays:
   * dead ones pile up outside its small heap (30+ MB each) before its collector notices.
   */
  sinkInto(sink: Uint8Array | undefined): number {
    const n = this.#sunk;
    this.#sink = sink;
    this.#sunk = 0;
    return n;
  }

  #sink: Uint8Array | undefined;
  #sunk = 0;

  /** The compressed bytes written since the last call, in order. */
  take(): Uint8Array[] {
    const c = this.#chunks;
    this.#chunks = [];
    return c;
  }

  #put(value: number, n: number): void {
    this.#bits |= value << this.#nbits;
    this.#nbits += n;
    while (this.#nbits >= 8) {
      this.#out[this.#op++] = this.#bits & 0xff;
      this.#bits >>>= 8;
      this.#nbits -= 8;
    }
  }

  /** LZ77 over buf[s, e) into tokens: a byte (< 256), or dist << 9 | 256 | (len − 3). */
  #match(s: number, e: number): number {
    const b = this.#buf;
    const dv = this.#dv;
    const table = this.#table;
    const tok = this.#tokens;
    const lf = this.#lf;
    const df = this.#df;
    const off = this.#offset;
    let nt = 0;
    let i = s;
    let lit = s;
    let skip = 32;
    const last = e - MIN_MATCH;
    while (i <= last) {
      const v = dv.getInt32(i, true);
      const h = (Math.imul(v, 0x1e35a7bd) >>> HASH_SHIFT) << 1;
      const c = table[h]! - off;
      const same = table[h + 1] === v;
      table[h] = i + off;
      table[h + 1] = v;
      // table[h + 1] is the 4 bytes at table[h]'s position: equal values are a match if still in reach.
      if (same && c >= 0 && i - c <= WINDOW) {
        const max = Math.min(MAX_MATCH, e - i);
        let n = MIN_MATCH;
        // Four bytes at a time; the first difference is the lowest set byte of the XOR.
        while (n + 4 <= max) {
          const x = dv.getInt32(c + n, true) ^ dv.getInt32(i + n, true);
          if (x !== 0) {
            n += (31 - Math.clz32(x & -x)) >> 3;
            break;
          }
          n += 4;
        }
        if (n + 4 > max) while (n < max && b[c + n] === b[i + n]) n++;
        for (let k = lit; k < i; k++) {
          const x = b[k]!;
          tok[nt++] = x;
          lf[x]!++;
        }
        const d = i - c;
        tok[nt++] = (d << 9) | 256 | (n - 3);
        lf[LEN_SYM[n - 3]!]!++;
        df[distSym(d)]!++;
        // Remember the position just before the match ends, so runs chain on cheaply.
        const j = i + n - 2;
        if (j <= last && j > i) {
          const w = dv.getInt32(j, true);
          const hj = (Math.imul(w, 0x1e35a7bd) >>> HASH_SHIFT) << 1;
          table[hj] = j + off;
          table[hj + 1] = w;
        }
        i += n;
        lit = i;
        skip = 32;
      } else {
        i += skip++ >> 5;
      }
    }
    for (let k = lit; k < e; k++) {
      const x = b[k]!;
      tok[nt++] = x;
      lf[x]!++;
    }
    return nt;
  }

  #block(s: number, e: number, final: boolean): void {
    const lf = this.#lf;
    const df = this.#df;
    lf.fill(0);
    df.fill(0);
    const input = this.#buf.subarray(s, e);
    this.#crc = crc32(input, this.#crc);
    this.#size = (this.#size + (e - s)) >>> 0;
    const nt = this.#match(s, e);
    lf[256] = 1;

    // Sizes of the three forms, in bits, to pick the smallest.
    let extra = 0;
    for (let k = 0; k < 29; k++) extra += lf[257 + k]! * LEN_EXTRA[k]!;
    for (let k = 0; k < 30; k++) extra += df[k]! * DIST_EXTRA[k]!;
    const llLen = this.#llLen;
    const dLen = this.#dLen;
    codeLengths(lf, 15, llLen);
    codeLengths(df, 15, dLen);
    let hlit = 286;
    while (hlit > 257 && llLen[hlit - 1] === 0) hlit--;
    let hdist = 30;
    while (hdist > 1 && dLen[hdist - 1] === 0) hdist--;
    const seq = new Uint8Array(hlit + hdist);
    seq.set(llLen.subarray(0, hlit), 0);
    seq.set(dLen.subarray(0, hdist), hlit);
    const ncl = runLengths(seq);
    const clFreq = new Uint32Array(19);
    for (let k = 0; k < ncl; k++) clFreq[RL_SYM[k]!]!++;
    const clLen = new Uint8Array(19);
    codeLengths(clFreq, 7, clLen);
    let hclen = 19;
    while (hclen > 4 && clLen[CL_ORDER[hclen - 1]!] === 0) hclen--;
    let dyn = 3 + 5 + 5 + 4 + 3 * hclen + extra;
    for (let k = 0; k < ncl; k++) {
      const sym = RL_SYM[k]!;
      dyn += clLen[sym]! + (sym === 16 ? 2 : sym === 17 ? 3 : sym === 18 ? 7 : 0);
    }
    let fixed = 3 + extra;
    for (let k = 0; k < 286; k++) {
      dyn += lf[k]! * llLen[k]!;
      fixed += lf[k]! * FIXED_LL[k]!;
    }
    for (let k = 0; k < 30; k++) {
      dyn += df[k]! * dLen[k]!;
      fixed += df[k]! * FIXED_D[k]!;
    }
    const len = e - s;
    const pieces = Math.max(1, Math.ceil(len / 65535));
    const stored = ((8 - ((this.#nbits + 3) & 7)) & 7) + 3 + 32 + (pieces - 1) * 40 + 8 * len;

    if (stored < dyn && stored < fixed) {
      this.#stored(input, final);
    } else if (fixed <= dyn) {
      this.#put(final ? 1 : 0, 1);
      this.#put(1, 2);
      this.#huffman(nt, FIXED_LL, FIXED_D);
    } else {
      this.#put(final ? 1 : 0, 1);
      this.#put(2, 2);
      this.#put(hlit - 257, 5);
      this.#put(hdist - 1, 5);
      this.#put(hclen - 4, 4);
      for (let k = 0; k < hclen; k++) this.#put(clLen[CL_ORDER[k]!]!, 3);
      const clCode = new Int32Array(19);
      canonicalCodes(clLen, 19, clCode);
      for (let k = 0; k < ncl; k++) {
        const sym = RL_SYM[k]!;
        const x = RL_EXTRA[k]!;
        this.#put(clCode[sym]! & 0xffff, clLen[sym]!);
        if (sym === 16) this.#put(x, 2);
        else if (sym === 17) this.#put(x, 3);
        else if (sym === 18) this.#put(x, 7);
      }
      this.#huffman(nt, llLen, dLen);
    }
    this.#emit();
  }

  #stored(input: Uint8Array, final: boolean): void {
    let off = 0;
    do {
      const n = Math.min(65535, input.length - off);
      const last = off + n >= input.length;
      this.#put(final && last ? 1 : 0, 1);
      this.#put(0, 2);
      if (this.#nbits > 0) this.#put(0, 8 - this.#nbits);
      const o = this.#out;
      o[this.#op++] = n & 0xff;
      o[this.#op++] = n >>> 8;
      o[this.#op++] = ~n & 0xff;
      o[this.#op++] = (~n >>> 8) & 0xff;
      if (this.#op + n > o.length) {
        this.#emit();
      }
      if (n > this.#out.length) throw new Error("GzipEncoder: stored piece larger than the output buffer");
      this.#out.set(input.subarray(off, off + n), this.#op);
      this.#op += n;
      off += n;
    } while (off < input.length);
  }

  /** Writes the block's tokens and end-of-block with the given code lengths. */
  #huffman(nt: number, llLen: Uint8Array, dLen: Uint8Array): void {
    const ll = this.#llCode;
    const dp = this.#dCode;
    // The fixed code has 288 lengths (RFC 1951 3.2.6); the two unused symbols still count
    // when the canonical codes are assigned, or every 9-bit literal (144…255) is off by two.
    canonicalCodes(llLen, llLen.length, ll);
    canonicalCodes(dLen, 30, dp);
    const st = writeTokens(this.#tokens, nt, ll, dp, this.#out, this.#op, this.#bits, this.#nbits);
    this.#op = st.op;
    this.#bits = st.bits;
    this.#nbits = st.nbits;
    this.#put(ll[256]! & 0xffff, llLen[256]!);
  }
}

/**
 * The token loop, kept free of `this` so it optimises well. Invariant: fewer than 16 bits are
 * pending before each code or extra field is added (each is at most 15 bits), so the
 * accumulator never passes 31 bits.
 */
function writeTokens(
  tok: Int32Array,
  nt: number,
  ll: Int32Array,
  dp: Int32Array,
  o: Uint8Array,
  op: number,
  bits: number,
  nbits: number,
): { op: number; bits: number; nbits: number } {
  for (let t = 0; t < nt; t++) {
    const x = tok[t]!;
    if (x < 256) {
      const c = ll[x]!;
      bits |= (c & 0xffff) << nbits;
      nbits += c >>> 16;
    } else {
      const l = x & 255;
      const sym = LEN_SYM[l]!;
      const c = ll[sym]!;
      bits |= (c & 0xffff) << nbits;
      nbits += c >>> 16;
      if (nbits >= 16) {
        o[op++] = bits & 0xff;
        o[op++] = (bits >>> 8) & 0xff;
        bits >>>= 16;
        nbits -= 16;
      }
      bits |= (l + 3 - LEN_BASE[sym - 257]!) << nbits;
      nbits += LEN_EXTRA[sym - 257]!;
      if (nbits >= 16) {
        o[op++] = bits & 0xff;
        o[op++] = (bits >>> 8) & 0xff;
        bits >>>= 16;
        nbits -= 16;
      }
      const d = x >>> 9;
      const ds = distSym(d);
      const dc = dp[ds]!;
      bits |= (dc & 0xffff) << nbits;
      nbits += dc >>> 16;
      if (nbits >= 16) {
        o[op++] = bits & 0xff;
        o[op++] = (bits >>> 8) & 0xff;
        bits >>>= 16;
        nbits -= 16;
      }
      bits |= (d - DIST_BASE[ds]!) << nbits;
      nbits += DIST_EXTRA[ds]!;
    }
    if (nbits >= 16) {
      o[op++] = bits & 0xff;
      o[op++] = (bits >>> 8) & 0xff;
      bits >>>= 16;
      nbits -= 16;
    }
  }
  return { op, bits, nbits };
}

const RL_SYM = new Uint8Array(286 + 30);
const RL_EXTRA = new Uint8Array(286 + 30);
/**
 * Run-length codes (RFC 1951 3.2.7) for a sequence of code lengths, into RL_SYM / RL_EXTRA;
 * returns how many.
 */
function runLengths(seq: Uint8Array): number {
  let n = 0;
  const emit = (sym: number, extra: number) => {
    RL_SYM[n] = sym;
    RL_EXTRA[n++] = extra;
  };
  let i = 0;
  while (i < seq.length) {
    const v = seq[i]!;
    let run = 1;
    while (i + run < seq.length && seq[i + run] === v) run++;
    i += run;
    if (v === 0) {
      while (run >= 11) {
        const r = Math.min(run, 138);
        emit(18, r - 11);
        run -= r;
      }
      if (run >= 3) {
        emit(17, run - 3);
        run = 0;
      }
    } else {
      emit(v, 0);
      run--;
      while (run >= 3) {
        const r = Math.min(run, 6);
        emit(16, r - 3);
        run -= r;
      }
    }
    for (; run > 0; run--) emit(v, 0);
  }
  return n;
}

/** The encoder deflateSegment restarts for its next segment on this thread. */
let spareEncoder: GzipEncoder | undefined;

/**
 * Raw deflate of one segment of a stream: `data` (at most SEGMENT_SIZE bytes, starting on a
 * segment boundary), started from `dictionary` (the WINDOW bytes before it; empty for the
 * first segment). A segment that is not the last ends with the sync flush the sequential
 * encoder writes at that boundary; the last one ends its final block (padded to a byte). The
 * gzip header, these segments in order, and gzipTrailer(crc32, size) of the whole input are
 * exactly the bytes GzipEncoder writes for that input. The bytes are written into `into` when
 * they fit (a view of it is returned), else into a new buffer.
 */
export function deflateSegment(
  dictionary: Uint8Array,
  data: Uint8Array,
  last: boolean,
  into?: Uint8Array,
): Uint8Array {
  if (data.length > SEGMENT_SIZE) throw new Error("deflateSegment: more than one segment of input");
  // One encoder per thread, restarted for each segment (this function never yields).
  let enc = spareEncoder;
  spareEncoder = undefined;
  if (enc) enc.restartRaw(dictionary);
  else enc = new GzipEncoder({ dictionary });
  enc.sinkInto(into);
  if (last) {
    enc.push(data);
    enc.finish();
  } else {
    if (data.length !== SEGMENT_SIZE)
      throw new Error("deflateSegment: a segment before the last must be whole");
    // All blocks but the last through push; the last with the boundary's flush.
    enc.push(data.subarray(0, SEGMENT_SIZE - BLOCK_SIZE));
    enc.flushSegment(data.subarray(SEGMENT_SIZE - BLOCK_SIZE));
  }
  const sunk = enc.sinkInto(undefined);
  const parts = enc.take();
  spareEncoder = enc;
  if (into && !parts.length) return into.subarray(0, sunk);
  // A buffer of its own (never a slice of Node's shared pool), so it can be transferred.
  const out = new Uint8Array(parts.reduce((k, p) => k + p.length, sunk));
  if (into) out.set(into.subarray(0, sunk));
  let o = sunk;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The 8-byte gzip trailer: CRC-32 and size modulo 2^32 of the uncompressed input, little-endian. */
export function gzipTrailer(crc: number, size: number): Uint8Array {
  const t = new Uint8Array(8);
  const v = new DataView(t.buffer);
  v.setUint32(0, crc >>> 0, true);
  v.setUint32(4, size >>> 0, true);
  return t;
}

/** gzip of a whole buffer (tests and small blobs). */
export function gzip(data: Uint8Array): Buffer {
  const enc = new GzipEncoder();
  enc.push(data);
  enc.finish();
  return Buffer.concat(enc.take());
}
