/**
 * The two facts about an ELF executable that decide what it needs from the image around it:
 * its program interpreter (PT_INTERP, the dynamic loader; absent in a static binary) and the
 * shared libraries it names (DT_NEEDED). Read from the program headers, as the kernel and the
 * loader read them, for 32- and 64-bit, little- and big-endian files.
 */
import { open } from "node:fs/promises";

export interface ElfLinkage {
  /** The loader path, e.g. /lib/ld-linux-aarch64.so.1; undefined for a static executable. */
  interpreter?: string;
  /** DT_NEEDED entries in file order, e.g. ["libc.so.6"]. */
  needed: string[];
  /** DT_RUNPATH / DT_RPATH directories, when the binary carries them. */
  runpath: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

/** Reads an ELF file's linkage; undefined when the file is not ELF. */
export async function elfLinkage(file: string): Promise<ElfLinkage | undefined> {
  const fh = await open(file, "r");
  try {
    const read = async (offset: number, length: number): Promise<Buffer> => {
      const b = Buffer.alloc(length);
      const { bytesRead } = await fh.read(b, 0, length, offset);
      if (bytesRead !== length) throw new Error(`truncated ELF file ${file}`);
      return b;
    };
    const ident = await read(0, 64).catch(() => undefined);
    if (!ident || ident.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const is64 = ident[4] === 2;
    const le = ident[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const word = (b: Buffer, o: number): bigint =>
      is64 ? (le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : BigInt(u32(b, o));
    const phoff = Number(word(ident, is64 ? 0x20 : 0x1c));
    const phentsize = u16(ident, is64 ? 0x36 : 0x2a);
    const phnum = u16(ident, is64 ? 0x38 : 0x2c);
    if (phnum === 0 || phentsize === 0 || phnum > 4096) return { needed: [], runpath: [] };
    const ph = await read(phoff, phentsize * phnum);
    interface Seg {
      type: number;
      offset: number;
      vaddr: bigint;
      filesz: number;
    }
    const segs: Seg[] = [];
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      segs.push(
        is64
          ? {
              type: u32(ph, o),
              offset: Number(word(ph, o + 8)),
              vaddr: word(ph, o + 16),
              filesz: Number(word(ph, o + 32)),
            }
          : {
              type: u32(ph, o),
              offset: u32(ph, o + 4),
              vaddr: BigInt(u32(ph, o + 8)),
              filesz: u32(ph, o + 16),
            },
      );
    }
    const out: ElfLinkage = { needed: [], runpath: [] };
    const interp = segs.find((s) => s.type === PT_INTERP);
    if (interp) out.interpreter = cstr(await read(interp.offset, interp.filesz), 0);
    const dyn = segs.find((s) => s.type === PT_DYNAMIC);
    if (!dyn) return out;
    const d = await read(dyn.offset, dyn.filesz);
    const size = is64 ? 16 : 8;
    const entries: [bigint, bigint][] = [];
    for (let o = 0; o + size <= d.length; o += size) {
      const tag = word(d, o);
      if (tag === DT_NULL) break;
      entries.push([tag, word(d, o + size / 2)]);
    }
    const strtab = entries.find(([t]) => t === DT_STRTAB)?.[1];
    if (strtab === undefined) return out;
    // DT_STRTAB is an address: the PT_LOAD segment that maps it gives its place in the file.
    const load = segs.find(
      (s) => s.type === PT_LOAD && strtab >= s.vaddr && strtab < s.vaddr + BigInt(s.filesz),
    );
    if (!load) return out;
    const strOff = load.offset + Number(strtab - load.vaddr);
    const strs = await read(strOff, load.offset + load.filesz - strOff);
    for (const [tag, val] of entries) {
      if (tag === DT_NEEDED) out.needed.push(cstr(strs, Number(val)));
      else if (tag === DT_RUNPATH || tag === DT_RPATH)
        out.runpath.push(...cstr(strs, Number(val)).split(":").filter(Boolean));
    }
    return out;
  } finally {
    await fh.close();
  }
}

function cstr(b: Buffer, at: number): string {
  const end = b.indexOf(0, at);
  return b.toString("latin1", at, end < 0 ? b.length : end);
}
