/** Generated test data, shared by the unit tests: nothing binary is checked in. */

/** `n` bytes from a seeded generator (mulberry32): the same "random" bytes on every run. */
export function noise(seed: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  let a = seed;
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}

/** `data` cut into consecutive pieces whose sizes cycle through `sizes`. */
export function pieces(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  let i = 0;
  while (off < data.length) {
    const n = sizes[i++ % sizes.length]!;
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}
