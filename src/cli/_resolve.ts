import os from "node:os";
import path from "node:path";
import { PolyarchError } from "../errors.js";
import { hostPlatform, type Platform, parsePlatformList } from "../platform/index.js";
import type { Exec } from "../util/exec.js";

/** The last second RFC 3339 can write (9999-12-31T23:59:59Z): skopeo and umoci parse no later `created`. */
export const MAX_EPOCH = 253402300799;

/** SOURCE_DATE_EPOCH's value: digits only (no sign, no spaces), at most MAX_EPOCH. */
/** --jobs: a positive whole number, by default the number of cores. */
export function parseJobs(text: string | undefined): number {
  const jobs = text === undefined ? os.availableParallelism() : Number(text);
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--jobs "${text}" is not a positive whole number`,
      hint: "Use --jobs 2, for example.",
    });
  return jobs;
}

export function parseSourceDateEpoch(v: string): number {
  if (!/^[0-9]{1,12}$/.test(v) || Number(v) > MAX_EPOCH) {
    const shown = JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
    throw new PolyarchError({
      code: "E_INPUT",
      message: /^[0-9]+$/.test(v)
        ? `SOURCE_DATE_EPOCH=${shown} is after 9999-12-31T23:59:59Z, the last time an image's created field can hold`
        : `SOURCE_DATE_EPOCH=${shown} is not a whole number of seconds since 1970 (digits only)`,
      hint: `Set it to seconds since 1970 between 0 and ${MAX_EPOCH}, such as $(git log -1 --format=%ct), or unset it.`,
    });
  }
  return Number(v);
}

/**
 * SOURCE_DATE_EPOCH from the environment (a whole number of seconds, per
 * reproducible-builds.org), else the time of the last commit of the repository holding
 * `dir`, else 0 (1970-01-01), so builds outside git are reproducible too.
 */
export async function resolveSourceDateEpoch(
  env: Record<string, string | undefined>,
  dir: string,
  exec: Exec,
): Promise<{ value: number; from: string }> {
  const v = env["SOURCE_DATE_EPOCH"];
  if (v !== undefined) return { value: parseSourceDateEpoch(v), from: "SOURCE_DATE_EPOCH" };
  try {
    const r = await exec("git", ["-C", dir, "log", "-1", "--format=%ct"], {
      env: { ...env, GIT_TERMINAL_PROMPT: "0" },
    });
    const n = Number(r.stdout.trim());
    if (r.code === 0 && r.stdout.trim() !== "" && Number.isSafeInteger(n))
      return { value: n, from: "last commit" };
  } catch {
    // git is not installed: fall through to 0.
  }
  return { value: 0, from: "default (not a git checkout)" };
}

/** The cache directory: POLYARCH_CACHE_DIR, else $XDG_CACHE_HOME/polyarch, else ~/.cache/polyarch. */
export function resolveCacheDir(env: Record<string, string | undefined>): string {
  if (env["POLYARCH_CACHE_DIR"]) return path.resolve(env["POLYARCH_CACHE_DIR"]);
  const base = env["XDG_CACHE_HOME"] || path.join(env["HOME"] || os.homedir(), ".cache");
  return path.join(base, "polyarch");
}

/** Parses repeated KEY=VALUE options. */
export function parsePairs(items: readonly string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${what} "${item}" is not KEY=VALUE`,
        hint: `Write ${what}s as KEY=VALUE, e.g. --${what} team=platform.`,
      });
    }
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/**
 * -p/--platform: a list (default linux/<host arch>), or `all` — every platform of
 * the base (ko's --platform=all), which the caller reads from the base once it can (`all`).
 */
export function parsePlatformFlag(
  list: readonly string[] | undefined,
  base: string | undefined,
): { platforms: Platform[]; all: boolean } {
  const all = list?.length === 1 && list[0]!.trim().toLowerCase() === "all";
  if (all && !base)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--platform all builds every platform of the base image, and no --base is given",
      hint: "Give the base: --base <registry reference or oci:dir[:tag]> --platform all.",
    });
  return {
    platforms: list?.length && !all ? parsePlatformList(list) : [{ ...hostPlatform(), os: "linux" }],
    all,
  };
}
