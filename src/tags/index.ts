/**
 * Tag rules (seed 003's tagRules, docker/metadata-action's types), applied to git metadata:
 *   commit        the full commit sha
 *   commit-short  the first N characters (default 8)
 *   latest        `latest`, only on the default branch unless `always`
 *   branch        the branch name, sanitised
 *   semver        from a `v1.2.3` tag on HEAD: 1.2.3, 1.2 and 1 — a pre-release gives only its full version
 *   raw           a fixed value
 * Every rule takes an optional prefix and suffix; values are sanitised to valid tags, and a dirty
 * tree adds `-dirty` (never to `latest`). Per-platform suffixes are added at publish time.
 */
import { PolyarchError } from "../errors.js";
import type { GitInfo } from "../git/index.js";
import { isValidTag } from "../ref/index.js";

export type TagRule =
  | { type: "commit"; prefix?: string; suffix?: string }
  | { type: "commit-short"; length?: number; prefix?: string; suffix?: string }
  | { type: "latest"; always?: boolean; prefix?: string; suffix?: string }
  | { type: "branch"; prefix?: string; suffix?: string }
  | { type: "semver"; prefix?: string; suffix?: string }
  | { type: "raw"; value: string; prefix?: string; suffix?: string };

export const DEFAULT_RULES: TagRule[] = [{ type: "semver" }, { type: "commit-short" }, { type: "latest" }];

const SEMVER =
  /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/** Makes a string a valid tag the way metadata-action does: invalid characters become "-". */
export function sanitizeTag(s: string): string {
  let t = s.replace(/[^A-Za-z0-9_.-]/g, "-");
  t = t.replace(/^[.-]+/, "");
  return t.slice(0, 128);
}

export interface TagOptions {
  /** Fail instead of skipping when `semver` finds no version tag on HEAD. */
  requireSemver?: boolean;
}

/** The highest semver tag pointing at HEAD, parsed. */
export function semverOf(
  tags: readonly string[],
): { version: string; major: string; minor: string; pre: boolean } | undefined {
  const parsed = tags
    .map((t) => ({ t, m: SEMVER.exec(t) }))
    .filter((x): x is { t: string; m: RegExpExecArray } => x.m !== null)
    .map(({ m }) => ({
      major: Number(m[1]),
      minor: Number(m[2]),
      patch: Number(m[3]),
      pre: m[4],
      build: m[5],
    }))
    .sort(
      (a, b) =>
        b.major - a.major || b.minor - a.minor || b.patch - a.patch || (a.pre ? 1 : 0) - (b.pre ? 1 : 0),
    );
  const v = parsed[0];
  if (!v) return undefined;
  const core = `${v.major}.${v.minor}.${v.patch}`;
  return {
    version: v.pre ? `${core}-${v.pre}` : core,
    major: String(v.major),
    minor: `${v.major}.${v.minor}`,
    pre: v.pre !== undefined,
  };
}

/** Expands rules into tags, in rule order, without duplicates; every result is a valid tag. */
export function expandTags(rules: readonly TagRule[], git: GitInfo, opts: TagOptions = {}): string[] {
  const out: string[] = [];
  const add = (rule: TagRule, value: string, dirtyOk = true) => {
    const tag = sanitizeTag(
      `${rule.prefix ?? ""}${value}${rule.suffix ?? ""}${git.dirty && dirtyOk ? "-dirty" : ""}`,
    );
    if (!isValidTag(tag)) {
      throw new PolyarchError({
        code: "E_TAG",
        message: `tag rule ${rule.type} gives "${tag}", which is not a valid tag`,
        hint: "Change the rule's prefix, suffix or value so the tag starts with a letter, digit or _ and is at most 128 characters.",
      });
    }
    if (!out.includes(tag)) out.push(tag);
  };
  for (const rule of rules) {
    switch (rule.type) {
      case "commit":
        add(rule, git.commit);
        break;
      case "commit-short": {
        const n = rule.length ?? 8;
        if (!Number.isInteger(n) || n < 4 || n > 40) {
          throw new PolyarchError({
            code: "E_TAG",
            message: `commit-short length ${n} is out of range`,
            hint: "Use a length from 4 to 40 (default 8).",
          });
        }
        add(rule, git.commit.slice(0, n));
        break;
      }
      case "latest":
        // `latest` names the default branch's newest build; a dirty tree never gets it.
        if (!git.dirty && (rule.always || (git.branch !== undefined && git.branch === git.defaultBranch)))
          add(rule, "latest", false);
        break;
      case "branch":
        if (git.branch) add(rule, git.branch);
        break;
      case "semver": {
        const v = semverOf(git.tags);
        if (!v) {
          if (opts.requireSemver) {
            throw new PolyarchError({
              code: "E_TAG",
              message: "tag rule semver needs a version tag like v1.2.3 on the commit being built",
              hint: `Tag the commit (git tag v1.2.3) or drop the semver rule for this build. HEAD has tags: ${git.tags.join(", ") || "(none)"}.`,
            });
          }
          break;
        }
        add(rule, v.version);
        if (!v.pre) {
          add(rule, v.minor);
          add(rule, v.major);
        }
        break;
      }
      case "raw":
        add(rule, rule.value);
        break;
    }
  }
  return out;
}

/** Per-platform suffixed tags (seed 003's -amd64/-arm64; seed 001's -linux-amd64), variants kept apart. */
export function platformTag(
  tag: string,
  p: { os: string; architecture: string; variant?: string },
  style: "arch" | "os-arch",
): string {
  const suffix = (style === "os-arch" ? [p.os, p.architecture, p.variant] : [p.architecture, p.variant])
    .filter(Boolean)
    .join("-");
  return sanitizeTag(`${tag}-${suffix}`);
}
