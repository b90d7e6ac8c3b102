/**
 * The tar writer of polyarch's layers: ustar headers, with a PAX extended header where ustar
 * cannot say it (a name or link target too long or not ASCII) and for extended attributes
 * (`SCHILY.xattr.<name>`, values as raw bytes — the reason this is not tar-stream's packer,
 * which writes PAX values as UTF-8 text). For entries without xattrs the bytes are the ones
 * tar-stream 3 writes, so layer digests did not move when this replaced it.
 */

export interface TarHeader {
  name: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkname?: string;
  /** Extended attributes, values as bytes. */
  xattrs?: [string, Uint8Array][] | undefined;
}

const BLOCK = 512;
const TYPEFLAG = { file: "0", directory: "5", symlink: "2", pax: "x" } as const;

/**
 * Writes `value` as `width` zero-padded octal digits and a space at b[at] (all 7s when it
 * does not fit, as tar-stream writes), digit by digit: no strings per header field.
 */
function writeOctal(b: Buffer, at: number, value: number, width: number): void {
  if (value >= 8 ** width) b.fill(0x37, at, at + width);
  else for (let i = width - 1, v = value; i >= 0; i--, v = Math.floor(v / 8)) b[at + i] = 0x30 + (v % 8);
  b[at + width] = 0x20;
}

type UstarFields = Omit<TarHeader, "xattrs" | "type"> & { type: keyof typeof TYPEFLAG };

/** One ustar header block; undefined when the name or link target needs PAX. */
function ustar(h: UstarFields): Buffer | undefined {
  const b = Buffer.alloc(BLOCK);
  return ustarAt(h, b, 0) ? b : undefined;
}

/** Writes one ustar header block into b[at, at + 512); false (nothing written) when it needs PAX. */
function ustarAt(h: UstarFields, b: Buffer, at: number): boolean {
  let name = h.name;
  let prefix = "";
  if (Buffer.byteLength(name) !== name.length) return false; // not ASCII
  while (name.length > 100) {
    const i = name.indexOf("/");
    if (i === -1) return false;
    prefix += prefix ? `/${name.slice(0, i)}` : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (prefix.length > 155) return false;
  if (h.linkname && Buffer.byteLength(h.linkname) > 100) return false;
  b.fill(0, at, at + BLOCK);
  b.write(name, at);
  writeOctal(b, at + 100, h.mode & 0o7777, 6);
  writeOctal(b, at + 108, h.uid, 6);
  writeOctal(b, at + 116, h.gid, 6);
  if (h.size >= 8 ** 11) {
    // base-256 for sizes of 8 GiB and more
    b[at + 124] = 0x80;
    let n = h.size;
    for (let i = 11; i > 0; i--) {
      b[at + 124 + i] = n & 0xff;
      n = Math.floor(n / 0x100);
    }
  } else writeOctal(b, at + 124, h.size, 11);
  writeOctal(b, at + 136, Math.floor(h.mtime), 11);
  b.write(TYPEFLAG[h.type], at + 156);
  if (h.linkname) b.write(h.linkname, at + 157);
  b.write("ustar\0", at + 257, "latin1");
  b.write("00", at + 263);
  writeOctal(b, at + 329, 0, 6);
  writeOctal(b, at + 337, 0, 6);
  if (prefix) b.write(prefix, at + 345);
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += b[at + i]!;
  for (let i = 156; i < BLOCK; i++) sum += b[at + i]!;
  writeOctal(b, at + 148, sum, 6);
  return true;
}

/** PAX records ("<len> <key>=<value>\n"; the length counts its own digits), values as bytes. */
function paxRecords(records: [string, Uint8Array][]): Buffer {
  return Buffer.concat(
    records.map(([k, v]) => {
      const body = Buffer.concat([Buffer.from(` ${k}=`), v, Buffer.from("\n")]);
      let len = body.length + String(body.length).length;
      if (String(len).length !== String(body.length).length) len = body.length + String(len).length;
      return Buffer.concat([Buffer.from(String(len)), body]);
    }),
  );
}

/** How many zero bytes round `size` up to whole blocks. */
export function paddingOf(size: number): number {
  const r = size % BLOCK;
  return r ? BLOCK - r : 0;
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE_BYTES = 2 * BLOCK;

/**
 * Writes an entry's header into b[at, at + 512) when one ustar block says it all (no PAX
 * header, no extended attributes): true if written; otherwise use headerBlocks.
 */
export function writeHeaderAt(h: TarHeader, b: Buffer, at: number): boolean {
  return !h.xattrs?.length && ustarAt(h, b, at);
}

/**
 * The header blocks of one entry (its PAX extended header first when it needs one); the
 * entry's data and padding follow them.
 */
export function headerBlocks(h: TarHeader): Buffer[] {
  const plain = h.xattrs?.length ? undefined : ustar(h);
  if (plain) return [plain];
  const records: [string, Uint8Array][] = [["path", Buffer.from(h.name)]];
  if (h.linkname) records.push(["linkpath", Buffer.from(h.linkname)]);
  for (const [k, v] of [...(h.xattrs ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    records.push([`SCHILY.xattr.${k}`, v]);
  const pax = paxRecords(records);
  const common = { mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime };
  return [
    ustar({
      ...common,
      name: "PaxHeader",
      type: "pax",
      size: pax.length,
      ...(h.linkname ? { linkname: "PaxHeader" } : {}),
    })!,
    pax,
    Buffer.alloc(paddingOf(pax.length)),
    ustar({
      ...common,
      name: "PaxHeader",
      type: h.type,
      size: h.size,
      ...(h.linkname ? { linkname: "PaxHeader" } : {}),
    })!,
  ];
}
