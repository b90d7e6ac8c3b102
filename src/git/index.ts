/**
 * Git metadata of a checkout, read with the git CLI: commit, branch, tag, dirty state, commit
 * time and the remote URL (credentials stripped). CI checkouts are often detached: the branch
 * then comes from the CI's variables, which the caller passes in (`branchHint`).
 */
import { PolyarchError } from "../errors.js";
import { type Exec, exec as defaultExec } from "../util/exec.js";

export interface GitInfo {
  commit: string;
  /** Branch name, or undefined when detached and no hint was given. */
  branch: string | undefined;
  /** Tags pointing exactly at HEAD. */
  tags: string[];
  dirty: boolean;
  /** Committer time, seconds since the epoch. */
  commitTime: number;
  /** Remote "origin" URL without credentials, if any. */
  remote: string | undefined;
  /** The default branch (origin/HEAD), else main or master if one exists. */
  defaultBranch: string | undefined;
}

export function stripCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return url.replace(/\/\/[^@/]+@/, "//");
  }
}

export async function readGit(
  dir: string,
  opts: { exec?: Exec; env?: Record<string, string | undefined>; branchHint?: string } = {},
): Promise<GitInfo> {
  const run = opts.exec ?? defaultExec;
  const env = { ...(opts.env ?? {}), GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };
  const git = async (...args: string[]) => {
    const r = await run("git", ["-C", dir, ...args], { env });
    return { ok: r.code === 0, out: r.stdout.trim(), err: r.stderr.trim() };
  };
  const head = await git("rev-parse", "HEAD").catch((e: unknown) => {
    throw new PolyarchError({
      code: "E_GIT",
      message: "git is not installed",
      hint: "Install git, or run outside a repository with the values given by flags.",
      cause: e,
    });
  });
  if (!head.ok) {
    throw new PolyarchError({
      code: "E_GIT",
      message: `${dir} is not a git checkout with a commit (${head.err.split("\n")[0]})`,
      hint: "Run polyarch inside a git repository that has at least one commit.",
    });
  }
  const [branch, tags, status, time, remote, originHead, hasMain, hasMaster] = await Promise.all([
    git("symbolic-ref", "--quiet", "--short", "HEAD"),
    git("tag", "--points-at", "HEAD"),
    git("status", "--porcelain", "--untracked-files=normal"),
    git("log", "-1", "--format=%ct"),
    git("remote", "get-url", "origin"),
    git("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"),
    git("rev-parse", "--verify", "--quiet", "refs/heads/main"),
    git("rev-parse", "--verify", "--quiet", "refs/heads/master"),
  ]);
  const defaultBranch = originHead.ok
    ? originHead.out.replace(/^origin\//, "")
    : hasMain.ok
      ? "main"
      : hasMaster.ok
        ? "master"
        : undefined;
  return {
    commit: head.out,
    branch: branch.ok && branch.out ? branch.out : opts.branchHint,
    tags: tags.ok ? tags.out.split("\n").filter(Boolean).sort() : [],
    dirty: status.ok && status.out !== "",
    commitTime: Number(time.out) || 0,
    remote: remote.ok && remote.out ? stripCredentials(remote.out) : undefined,
    defaultBranch,
  };
}
