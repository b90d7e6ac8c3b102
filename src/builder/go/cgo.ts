/**
 * cgo, cross-compiled: a C compiler per target platform (Debian's cross toolchains found by
 * their triplet, or the user's choice), static linking by default on an empty base, and a
 * check that a dynamically linked binary finds its loader and libraries in the base it is put on.
 */
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import { formatPlatform, parsePlatform, type Platform } from "../../platform/index.js";
import { isExecutable, onPath } from "../../util/exec.js";
import type { ElfLinkage } from "../../util/elf.js";
import type { Tree } from "../dockerfile/tree.js";

export type CgoLink = "static" | "dynamic";

export interface CgoOptions {
  /** Default: static on scratch, dynamic on a base (which must carry the matching libc). */
  link?: CgoLink;
  /** C compiler by platform ("linux/arm64" or "linux/arm/v7" → "aarch64-linux-gnu-gcc"). */
  cc?: Record<string, string>;
}

/**
 * cgo settings from what the user wrote (--cgo / cgo:, --cc / cc:) and the environment: on
 * when asked, or when CGO_ENABLED=1 is exported (as ko reads it); `false` turns it off.
 */
export function cgoOptions(
  input: { cgo?: boolean | string | undefined; cc?: Record<string, string> | undefined },
  env: Record<string, string | undefined>,
  where: { cgo: string; cc: string },
): CgoOptions | undefined {
  const v = input.cgo;
  let on: CgoOptions | undefined;
  if (v === undefined) on = env["CGO_ENABLED"] === "1" ? {} : undefined;
  else if (v === true || v === "true" || v === "auto") on = {};
  else if (v === "static" || v === "dynamic") on = { link: v };
  else if (v !== false && v !== "false")
    throw new PolyarchError({
      code: "E_INPUT",
      message: `${where.cgo} ${JSON.stringify(v)} is not one of true, static, dynamic or false`,
      hint: "cgo: true links statically on scratch and dynamically on a base; static or dynamic say which.",
    });
  const entries = Object.entries(input.cc ?? {});
  if (!entries.length) return on;
  if (!on)
    throw new PolyarchError({
      code: "E_INPUT",
      message: `${where.cc} names C compilers, but cgo is off`,
      hint: `Turn cgo on as well (${where.cgo === "--cgo" ? "--cgo" : "cgo: true"}), or leave out ${where.cc}.`,
    });
  const cc: Record<string, string> = {};
  for (const [k, compiler] of entries) {
    let p: Platform;
    try {
      p = parsePlatform(k);
    } catch (e) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${where.cc} ${JSON.stringify(k)} is not a platform: ${(e as Error).message}`,
        hint: "Key compilers by platform, e.g. linux/arm64=aarch64-linux-gnu-gcc.",
      });
    }
    if (!compiler.trim())
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${where.cc} for ${k} names no compiler`,
        hint: "Give a compiler name or path, e.g. linux/arm64=aarch64-linux-gnu-gcc.",
      });
    // os/arch without a variant stands for every variant of it.
    cc[k.split("/").length === 2 ? `${p.os}/${p.architecture}` : formatPlatform(p)] = compiler;
  }
  return { ...on, cc };
}

/** The C compiler (and C++ compiler, where there is one) for one platform. */
export interface Compiler {
  cc: string;
  cxx?: string;
  /** The GNU triplet of the target, when polyarch knows it (library directories). */
  triplet?: string;
}

interface Known {
  triplet: string;
  /** The Debian/Ubuntu package that brings `<triplet>-gcc`. */
  pkg: string;
}

/** Debian's cross compilers for Linux targets: Go architecture → [GNU triplet, Debian architecture]. */
const LINUX_CROSS: Record<string, [string, string]> = {
  amd64: ["x86_64-linux-gnu", "amd64"],
  arm64: ["aarch64-linux-gnu", "arm64"],
  // armhf is ARMv7 with hardware floating point; armel (below) runs on v5 and v6 CPUs.
  arm: ["arm-linux-gnueabihf", "armhf"],
  "386": ["i686-linux-gnu", "i386"],
  ppc64le: ["powerpc64le-linux-gnu", "ppc64el"],
  s390x: ["s390x-linux-gnu", "s390x"],
  riscv64: ["riscv64-linux-gnu", "riscv64"],
  mips64le: ["mips64el-linux-gnuabi64", "mips64el"],
  mipsle: ["mipsel-linux-gnu", "mipsel"],
  loong64: ["loongarch64-linux-gnu", "loong64"],
};
const ARMEL: [string, string] = ["arm-linux-gnueabi", "armel"];
const MINGW: Record<string, Known> = {
  amd64: { triplet: "x86_64-w64-mingw32", pkg: "gcc-mingw-w64-x86-64" },
  "386": { triplet: "i686-w64-mingw32", pkg: "gcc-mingw-w64-i686" },
};

/** The cross toolchain Debian has for a Go target (crossbuild-essential-<debian arch>). */
function known(p: Platform): Known | undefined {
  if (p.os === "windows") return MINGW[p.architecture];
  if (p.os !== "linux") return undefined;
  const t =
    p.architecture === "arm" && (p.variant === "v5" || p.variant === "v6")
      ? ARMEL
      : LINUX_CROSS[p.architecture];
  return t ? { triplet: t[0], pkg: `crossbuild-essential-${t[1]}` } : undefined;
}

/**
 * The Debian/Ubuntu packages that bring a C compiler for each platform of a cgo build on a
 * machine of `host`'s architecture: gcc for its own, crossbuild-essential-<arch> for the others
 * (what a generated CI installs).
 */
export function cToolchainPackages(platforms: readonly Platform[], hostArch: string): string[] {
  const pkgs = new Set<string>();
  for (const p of platforms) {
    if (p.os === "linux" && p.architecture === hostArch) {
      pkgs.add("gcc");
      pkgs.add("libc6-dev");
      continue;
    }
    const k = known(p);
    if (k) pkgs.add(k.pkg);
  }
  return [...pkgs].sort();
}

/** True when a compiler setting (a name on PATH or a path, maybe with arguments) can run. */
function runnable(cc: string, env: Record<string, string | undefined>): boolean {
  const prog = cc.trim().split(/\s+/)[0] ?? "";
  if (!prog) return false;
  return prog.includes("/") ? isExecutable(prog) : onPath(prog, env);
}

/** The environment variable naming a platform's compiler: CC_linux_arm64, CC_linux_arm_v7. */
function envNames(p: Platform): string[] {
  const base = `CC_${p.os}_${p.architecture}`;
  return p.variant ? [`${base}_${p.variant}`, base] : [base];
}

/**
 * A C compiler for every platform, chosen in this order: `cc:` by platform (polyarch.yaml or
 * --cc), CC_<os>_<arch>[_<variant>] in the environment, Debian's `<triplet>-gcc`, and for the
 * machine's own platform CC or gcc. Every platform without one is named in one error, with the
 * package that brings it.
 */
export function resolveCompilers(
  platforms: readonly Platform[],
  opts: CgoOptions,
  env: Record<string, string | undefined>,
  host: Platform,
): Map<string, Compiler> {
  const out = new Map<string, Compiler>();
  const missing: { platform: string; target: Platform; tried: string; pkg?: string; named: boolean }[] = [];
  for (const p of platforms) {
    const key = formatPlatform(p);
    const k = known(p);
    const named =
      opts.cc?.[key] ??
      opts.cc?.[`${p.os}/${p.architecture}`] ??
      envNames(p)
        .map((n) => env[n])
        .find((v) => v !== undefined && v !== "");
    if (named !== undefined) {
      if (!runnable(named, env)) {
        missing.push({ platform: key, target: p, tried: named, named: true });
        continue;
      }
      out.set(key, { cc: named, ...(k ? { triplet: k.triplet } : {}) });
      continue;
    }
    if (k && onPath(`${k.triplet}-gcc`, env)) {
      const cxx = `${k.triplet}-g++`;
      out.set(key, {
        cc: `${k.triplet}-gcc`,
        ...(onPath(cxx, env) ? { cxx } : {}),
        triplet: k.triplet,
      });
      continue;
    }
    const native = p.os === host.os && p.architecture === host.architecture;
    const fallback = native ? [env["CC"], "gcc", "cc"].find((c) => c && runnable(c, env)) : undefined;
    if (fallback) {
      out.set(key, { cc: fallback, ...(k ? { triplet: k.triplet } : {}) });
      continue;
    }
    missing.push({
      platform: key,
      target: p,
      tried: k ? `${k.triplet}-gcc` : "",
      ...(k ? { pkg: k.pkg } : {}),
      named: false,
    });
  }
  if (missing.length) {
    const what = missing
      .map((m) =>
        m.named
          ? `${m.platform} (${m.tried} was named but cannot be run)`
          : m.tried
            ? `${m.platform} (${m.tried} is not on PATH)`
            : `${m.platform} (polyarch knows no cross compiler for it)`,
      )
      .join(", ");
    const pkgs = [...new Set(missing.flatMap((m) => (m.pkg ? [m.pkg] : [])))];
    const first = missing[0]!;
    throw new PolyarchError({
      code: "E_TOOLCHAIN",
      message: `no C compiler for the cgo build on ${what}`,
      hint:
        (pkgs.length
          ? `Install ${pkgs.join(" ")} (apt-get install ${pkgs.join(" ")} on Debian/Ubuntu), or n`
          : "N") +
        `ame a compiler per platform: cc: in polyarch.yaml, --cc ${first.platform}=<compiler>, or ${envNames(first.target).at(-1)}.`,
      data: { platforms: missing.map((m) => m.platform) },
    });
  }
  return out;
}

/** `go build` flags for a link mode: a static binary needs the external linker told so. */
export function linkFlags(link: CgoLink): { ldflags: string[]; tags: string[] } {
  return link === "static"
    ? // osusergo/netgo: user and host lookups in Go, not through glibc's NSS (which a static binary cannot load).
      { ldflags: ["-linkmode=external", "-extldflags=-static"], tags: ["osusergo", "netgo"] }
    : { ldflags: [], tags: [] };
}

/** What a binary needs from the image and does not find in the base's tree, in words. */
export function missingFromBase(linkage: ElfLinkage, tree: Tree, triplet: string | undefined): string[] {
  const has = (p: string): boolean => {
    try {
      const n = tree.get(tree.resolve(p));
      return n !== undefined && n.type === "file";
    } catch {
      return false;
    }
  };
  const missing: string[] = [];
  if (linkage.interpreter && !has(linkage.interpreter)) missing.push(`its loader ${linkage.interpreter}`);
  const dirs = [
    ...linkage.runpath.filter((d) => d.startsWith("/")),
    ...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []),
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/usr/local/lib",
  ];
  for (const lib of linkage.needed) {
    if (!dirs.some((d) => has(path.posix.join(d, lib)))) missing.push(lib);
  }
  return missing;
}
