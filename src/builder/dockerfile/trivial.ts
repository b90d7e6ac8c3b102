/**
 * The closed list of RUN commands polyarch carries out itself, because their effect on the
 * file system is fully defined and needs no process of the target CPU (issue 9 §3): a RUN is
 * native only when every command in it is on the list and its arguments parse; anything else
 * goes to a real builder. The shell forms accepted are commands joined by `&&` or `;`, with
 * plain words (quotes allowed, no expansion, redirection, pipes or subshells).
 */
export type FsOp =
  | { op: "mkdir"; paths: string[]; parents: boolean; mode?: number }
  | { op: "chmod"; paths: string[]; mode: number; recursive: boolean }
  | { op: "chown"; paths: string[]; owner: string; recursive: boolean }
  | { op: "symlink"; target: string; link: string; force: boolean }
  | { op: "touch"; paths: string[] }
  | { op: "rm"; paths: string[]; recursive: boolean; force: boolean }
  | { op: "true" };

/** Why a RUN is not native, or the operations it stands for. */
export type Classified = { native: true; ops: FsOp[] } | { native: false; why: string };

const SHELL_META = /[|<>`$(){}*?[\]~!#\n]/;

/** Splits shell text into words, honouring quotes; undefined when it uses anything beyond words. */
function words(text: string): string[] | undefined {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === " " || c === "\t") {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) return undefined;
      const inner = text.slice(i + 1, end);
      if (c === '"' && /[$`\\]/.test(inner)) return undefined;
      cur += inner;
      i = end;
      continue;
    }
    if (c === "\\" || SHELL_META.test(c)) return undefined;
    cur += c;
  }
  if (inWord) out.push(cur);
  return out;
}

function octal(s: string): number | undefined {
  return /^0?[0-7]{3,4}$/.test(s) ? Number.parseInt(s, 8) : undefined;
}

function flagsAndArgs(argv: string[], allowed: string): { flags: Set<string>; rest: string[] } | undefined {
  const flags = new Set<string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    for (const f of a.slice(1)) {
      if (!allowed.includes(f)) return undefined;
      flags.add(f);
    }
  }
  return { flags, rest: argv.slice(i) };
}

function one(argv: string[]): FsOp | string {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case "true":
    case ":":
      return args.length ? "true with arguments" : { op: "true" };
    case "mkdir": {
      // mkdir [-p] [-m MODE] path…
      const rest: string[] = [];
      let parents = false;
      let mode: number | undefined;
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        if (a === "-p" || a === "--parents") parents = true;
        else if (a === "-m" || a === "--mode") {
          mode = octal(args[++i] ?? "");
          if (mode === undefined) return "mkdir -m with a mode that is not octal";
        } else if (/^-pm$|^-mp$/.test(a)) return "combined mkdir flags";
        else if (a.startsWith("-")) return `mkdir ${a}`;
        else rest.push(a);
      }
      if (!rest.length) return "mkdir without a path";
      return { op: "mkdir", paths: rest, parents, ...(mode !== undefined ? { mode } : {}) };
    }
    case "chmod": {
      const p = flagsAndArgs(args, "R");
      if (!p || p.rest.length < 2) return "chmod with flags or arguments polyarch does not model";
      const mode = octal(p.rest[0]!);
      if (mode === undefined) return `chmod ${p.rest[0]} (only octal modes are native)`;
      return { op: "chmod", paths: p.rest.slice(1), mode, recursive: p.flags.has("R") };
    }
    case "chown": {
      const p = flagsAndArgs(args, "R");
      if (!p || p.rest.length < 2) return "chown with flags or arguments polyarch does not model";
      if (!/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$/.test(p.rest[0]!)) return `chown ${p.rest[0]}`;
      return { op: "chown", paths: p.rest.slice(1), owner: p.rest[0]!, recursive: p.flags.has("R") };
    }
    case "ln": {
      const p = flagsAndArgs(args, "sfn");
      if (!p || !p.flags.has("s")) return "ln without -s (hard links are not native)";
      if (p.rest.length !== 2) return "ln -s with other than a target and a link name";
      return { op: "symlink", target: p.rest[0]!, link: p.rest[1]!, force: p.flags.has("f") };
    }
    case "touch": {
      if (!args.length || args.some((a) => a.startsWith("-"))) return "touch with flags";
      return { op: "touch", paths: args };
    }
    case "rm": {
      const p = flagsAndArgs(args, "rRf");
      if (!p || !p.rest.length) return "rm with flags or arguments polyarch does not model";
      return {
        op: "rm",
        paths: p.rest,
        recursive: p.flags.has("r") || p.flags.has("R"),
        force: p.flags.has("f"),
      };
    }
    default:
      return cmd ?? "an empty command";
  }
}

/** Classifies a shell-form RUN command line. */
export function classifyRun(command: string): Classified {
  const parts = command.split(/&&|;/).map((s) => s.trim());
  if (parts.some((p) => p === "")) return { native: false, why: "an empty command in a list" };
  const ops: FsOp[] = [];
  for (const part of parts) {
    const argv = words(part);
    if (!argv)
      return { native: false, why: `"${part}" uses the shell (expansion, redirection, pipes or escapes)` };
    const r = one(argv);
    if (typeof r === "string") return { native: false, why: `${r} needs a process` };
    ops.push(r);
  }
  return { native: true, ops };
}
