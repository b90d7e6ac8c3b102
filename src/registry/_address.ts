/**
 * Which IP addresses are public: the SSRF rule (reliability.md REG-16…18, issue 8) is applied
 * to the address a connection actually goes to, in every spelling an address can take.
 *
 * IPv4 is read as inet_aton reads it (decimal, hex and octal parts, 1–4 of them), IPv6 with
 * its embedded IPv4 forms (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, SIIT
 * ::ffff:0:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16), which are judged by the IPv4 address
 * they carry. Ranges: RFC 6890's special-purpose registries.
 */
import { isIP } from "node:net";

export type AddressClass =
  "public" | "unspecified" | "loopback" | "private" | "shared" | "link-local" | "multicast" | "reserved";

/** Parses IPv4 the way inet_aton does (so 2130706433, 0x7f000001 and 0177.1 are all 127.0.0.1). */
export function parseIPv4(s: string): number | undefined {
  const parts = s.split(".");
  if (parts.length < 1 || parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : Number.parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = p.length === 1 ? 0 : Number.parseInt(p.slice(1), 8);
    else if (/^[1-9][0-9]*$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isSafeInteger(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255)) return undefined;
  if (last >= 2 ** (8 * (4 - nums.length))) return undefined;
  let v = 0;
  for (const n of nums) v = v * 256 + n;
  return v * 2 ** (8 * (4 - nums.length)) + last;
}

/** Parses IPv6 (zone id dropped, an IPv4 tail allowed) into eight 16-bit groups. */
export function parseIPv6(s: string): number[] | undefined {
  const text = s.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (isIP(text) !== 6) return undefined;
  let head = text;
  let tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = parseIPv4(v4[1]!);
    if (n === undefined) return undefined;
    tail = [Math.floor(n / 65536), n % 65536];
    head = text.slice(0, -v4[1]!.length);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const [l, r] = head.includes("::") ? head.split("::") : [head, undefined];
  const groups = (x: string | undefined) => (x ? x.split(":").map((g) => Number.parseInt(g, 16)) : []);
  const left = groups(l);
  const right = groups(r);
  const fill = 8 - tail.length - left.length - right.length;
  if (r === undefined && fill !== 0) return undefined;
  return [...left, ...new Array<number>(Math.max(0, fill)).fill(0), ...right, ...tail];
}

function classifyV4(n: number): AddressClass {
  const a = Math.floor(n / 2 ** 24);
  const b = Math.floor(n / 2 ** 16) % 256;
  const c = Math.floor(n / 2 ** 8) % 256;
  if (a === 0) return n === 0 ? "unspecified" : "reserved"; // 0.0.0.0/8 "this network"
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168)) return "private";
  if (a === 100 && b >= 64 && b < 128) return "shared"; // 100.64/10 carrier-grade NAT
  if (a === 169 && b === 254) return "link-local"; // 169.254.169.254: cloud metadata
  if (a === 192 && b === 0 && c === 0) return "reserved"; // IETF protocol assignments
  if (a === 198 && (b === 18 || b === 19)) return "reserved"; // benchmarking
  if (a >= 224 && a < 240) return "multicast";
  if (a >= 240) return "reserved";
  return "public";
}

function classifyV6(g: number[]): AddressClass {
  const v4 = (hi: number, lo: number) => classifyV4(hi * 65536 + lo);
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 8)) return "unspecified";
  if (zero(0, 7) && g[7] === 1) return "loopback";
  if (zero(0, 5) && g[5] === 0xffff) return v4(g[6]!, g[7]!); // ::ffff:a.b.c.d (mapped)
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return v4(g[6]!, g[7]!); // ::ffff:0:a.b.c.d (SIIT)
  if (zero(0, 6)) return v4(g[6]!, g[7]!); // ::a.b.c.d (compatible, deprecated)
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return v4(g[6]!, g[7]!); // NAT64 well-known prefix
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) return "private"; // local-use NAT64
  if (g[0] === 0x2002) return v4(g[1]!, g[2]!); // 6to4 carries an IPv4 address
  const first = g[0]!;
  if ((first & 0xfe00) === 0xfc00) return "private"; // fc00::/7 unique local
  if ((first & 0xffc0) === 0xfe80) return "link-local";
  if ((first & 0xffc0) === 0xfec0) return "private"; // fec0::/10 site-local (deprecated)
  if ((first & 0xff00) === 0xff00) return "multicast";
  if (first === 0x100 && zero(1, 4)) return "reserved"; // discard-only
  return "public";
}

/** Classifies an IP address literal in any spelling; undefined when it is not one. */
export function classifyAddress(s: string): AddressClass | undefined {
  const bare = s.replace(/^\[|\]$/g, "");
  if (bare.includes(":")) {
    const g = parseIPv6(bare);
    return g ? classifyV6(g) : undefined;
  }
  const n = parseIPv4(bare);
  return n === undefined ? undefined : classifyV4(n);
}

/** True for a host that is an IP literal (any spelling); names are resolved first. */
export function isAddressLiteral(host: string): boolean {
  return classifyAddress(host) !== undefined;
}
