/**
 * Platforms as buildx writes them ("linux/arm/v7"), mapped exactly to Go's GOOS/GOARCH and
 * variant variables and to the OCI platform object.
 * https://github.com/opencontainers/image-spec/blob/main/image-index.md#platform-variants
 */
import { PolyarchError } from "../errors.js";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

/** GOOS values Go knows (go tool dist list); the builder re-checks with the real toolchain. */
const KNOWN_OS = new Set([
  "aix",
  "android",
  "darwin",
  "dragonfly",
  "freebsd",
  "illumos",
  "ios",
  "js",
  "linux",
  "netbsd",
  "openbsd",
  "plan9",
  "solaris",
  "wasip1",
  "windows",
]);
const KNOWN_ARCH = new Set([
  "386",
  "amd64",
  "arm",
  "arm64",
  "loong64",
  "mips",
  "mips64",
  "mips64le",
  "mipsle",
  "ppc64",
  "ppc64le",
  "riscv64",
  "s390x",
  "wasm",
]);

/** Names other tools and kernels use, normalised the way containerd does. */
const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  aarch64: { architecture: "arm64" },
  x86_64: { architecture: "amd64" },
  "x86-64": { architecture: "amd64" },
  i386: { architecture: "386" },
  i686: { architecture: "386" },
  armhf: { architecture: "arm", variant: "v7" },
  armel: { architecture: "arm", variant: "v6" },
};

const VARIANTS: Record<string, RegExp> = {
  arm: /^v[5-8]$/,
  arm64: /^v(8|9)(\.[0-9])?$/,
  amd64: /^v[1-4]$/,
  riscv64: /^rva2[02]u64$/,
  ppc64le: /^power(8|9|10)$/,
  ppc64: /^power(8|9|10)$/,
  mips: /^(hardfloat|softfloat)$/,
  mipsle: /^(hardfloat|softfloat)$/,
};

const COMPONENT = /^[a-z0-9_.-]+$/;

function bad(input: string, why: string): PolyarchError {
  return new PolyarchError({
    code: "E_PLATFORM",
    message: `invalid platform "${input}": ${why}`,
    hint: "Write platforms as os/arch[/variant], e.g. linux/amd64,linux/arm64,linux/arm/v7.",
  });
}

/** Parses one "os/arch[/variant]" string and normalises it (linux/arm → linux/arm/v7, arm64/v8 → arm64). */
export function parsePlatform(input: string): Platform {
  const s = input.trim().toLowerCase();
  const parts = s.split("/");
  if (s === "" || parts.length < 2 || parts.length > 3) {
    throw bad(input, "expected os/arch or os/arch/variant");
  }
  for (const p of parts) {
    if (!COMPONENT.test(p)) throw bad(input, `"${p}" is not a valid component`);
  }
  const os = parts[0] as string;
  let architecture = parts[1] as string;
  let variant = parts[2];
  const alias = ARCH_ALIASES[architecture];
  if (alias) {
    architecture = alias.architecture;
    if (alias.variant && variant === undefined) variant = alias.variant;
  }
  if (!KNOWN_OS.has(os)) throw bad(input, `unknown operating system "${os}"`);
  if (!KNOWN_ARCH.has(architecture)) throw bad(input, `unknown architecture "${architecture}"`);
  // Defaults that buildx and containerd apply, so the same image matches either spelling.
  if (architecture === "arm" && variant === undefined) variant = "v7";
  if (architecture === "arm64" && variant === "v8") variant = undefined;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (variant !== undefined) {
    const re = VARIANTS[architecture];
    if (!re) throw bad(input, `architecture "${architecture}" has no variants`);
    if (!re.test(variant)) throw bad(input, `unknown variant "${variant}" for ${architecture}`);
  }
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/** Parses a comma- or space-separated list, rejecting duplicates after normalisation. */
export function parsePlatformList(input: string | readonly string[]): Platform[] {
  const items = (typeof input === "string" ? [input] : input)
    .flatMap((s) => s.split(/[,\s]+/))
    .filter((s) => s !== "");
  if (items.length === 0) {
    throw new PolyarchError({
      code: "E_PLATFORM",
      message: "no platform given",
      hint: "Name at least one platform, e.g. --platform linux/amd64,linux/arm64.",
    });
  }
  const out: Platform[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const p = parsePlatform(item);
    const key = formatPlatform(p);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(p);
  }
  return out;
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The Go environment that targets a platform. */
export function toGoEnv(p: Platform): Record<string, string> {
  const env: Record<string, string> = { GOOS: p.os, GOARCH: p.architecture };
  const v = p.variant;
  switch (p.architecture) {
    case "arm":
      // arm/v8 is a 32-bit userland on an ARMv8 CPU: Go's best 32-bit target is GOARM=7.
      env["GOARM"] = v === "v8" ? "7" : (v ?? "v7").slice(1);
      break;
    case "amd64":
      env["GOAMD64"] = v ?? "v1";
      break;
    case "arm64":
      if (v) env["GOARM64"] = v.includes(".") ? v : `${v}.0`;
      break;
    case "riscv64":
      if (v) env["GORISCV64"] = v;
      break;
    case "ppc64":
    case "ppc64le":
      if (v) env["GOPPC64"] = v;
      break;
    case "mips":
    case "mipsle":
      if (v) env["GOMIPS"] = v;
      break;
  }
  return env;
}

/** Deterministic order for index entries: os, architecture, variant. */
export function comparePlatforms(a: Platform, b: Platform): number {
  const ka = [a.os, a.architecture, a.variant ?? ""];
  const kb = [b.os, b.architecture, b.variant ?? ""];
  for (let i = 0; i < 3; i++) {
    const x = ka[i] as string;
    const y = kb[i] as string;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** True when `have` satisfies `want` (arm/v7 matches arm/v7; a missing variant matches the default). */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = parsePlatform(formatPlatform(want));
  const h = parsePlatform(formatPlatform(have));
  return w.os === h.os && w.architecture === h.architecture && (w.variant ?? "") === (h.variant ?? "");
}

/** The platform of the machine polyarch runs on. */
export function hostPlatform(): Platform {
  const archMap: Record<string, string> = {
    x64: "amd64",
    ia32: "386",
    arm64: "arm64",
    arm: "arm",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
    loong64: "loong64",
  };
  const osMap: Record<string, string> = {
    win32: "windows",
    linux: "linux",
    darwin: "darwin",
    freebsd: "freebsd",
  };
  return parsePlatform(
    `${osMap[process.platform] ?? process.platform}/${archMap[process.arch] ?? process.arch}`,
  );
}
