/**
 * The closed list of RUN commands polyarch carries out itself, because their effect on the
 * file system is fully defined and needs no process of the target CPU (issue 9 §3): a RUN is
 * native only when every command in it is on the list and its arguments parse; anything else
 * goes to a real builder. The shell forms accepted are commands joined by `&&` or `;`, with
 * plain words (quotes allowed, no expansion, redirection, pipes or subshells).
 */
import path from "node:path";

export type FsOp = (
  | { op: "mkdir"; paths: string[]; parents: boolean; mode?: number }
  | { op: "chmod"; paths: string[]; mode: number; recursive: boolean }
  | { op: "chown"; paths: string[]; owner: string; recursive: boolean }
  | { op: "symlink"; target: string; link: string; force: boolean }
  | { op: "touch"; paths: string[] }
  | { op: "rm"; paths: string[]; recursive: boolean; force: boolean }
  /** File capabilities to set (undefined: remove them, setcap -r). */
  | { op: "setcap"; files: { path: string; caps?: FileCaps }[] }
  | { op: "true" }
) & {
  /** The command as written (a name looked up in PATH, or a path); absent for shell builtins. */
  cmd?: string;
  /** The list operator after it: with ";" the shell goes on when it fails. */
  then?: ";" | "&&";
};

/** A file's capability sets as bit masks over capability numbers (setcap's cap_from_text). */
export interface FileCaps {
  permitted: bigint;
  inheritable: bigint;
  effective: boolean;
}

/** Capability names by number, as libcap 2.66 knows them (CAP_LAST_CAP = 40). */
export const CAPABILITIES = [
  "chown",
  "dac_override",
  "dac_read_search",
  "fowner",
  "fsetid",
  "kill",
  "setgid",
  "setuid",
  "setpcap",
  "linux_immutable",
  "net_bind_service",
  "net_broadcast",
  "net_admin",
  "net_raw",
  "ipc_lock",
  "ipc_owner",
  "sys_module",
  "sys_rawio",
  "sys_chroot",
  "sys_ptrace",
  "sys_pacct",
  "sys_admin",
  "sys_boot",
  "sys_nice",
  "sys_resource",
  "sys_time",
  "sys_tty_config",
  "mknod",
  "lease",
  "audit_write",
  "audit_control",
  "setfcap",
  "mac_override",
  "mac_admin",
  "syslog",
  "wake_alarm",
  "block_suspend",
  "audit_read",
  "perfmon",
  "bpf",
  "checkpoint_restore",
];

/**
 * Parses setcap's capability text (cap_from_text): clauses like `cap_net_bind_service=+ep`,
 * `cap_a,cap_b+ep`, `all=ep`, `cap_x=p cap_y+i`; undefined when it is not that form, or when
 * the effective flags differ from permitted|inheritable (a file has one effective bit, and
 * setcap refuses other sets).
 */
export function parseCaps(text: string): FileCaps | undefined {
  const sets = { e: 0n, i: 0n, p: 0n };
  const all = (1n << BigInt(CAPABILITIES.length)) - 1n;
  for (const clause of text.trim().split(/\s+/)) {
    const m = /^([a-z_0-9,]*)((?:[=+-][eip]*)+)$/i.exec(clause);
    if (!m) return undefined;
    let mask = 0n;
    if (m[1] === "" || m[1]!.toLowerCase() === "all") mask = all;
    else
      for (const name of m[1]!.toLowerCase().split(",")) {
        const n = CAPABILITIES.indexOf(name.replace(/^cap_/, ""));
        if (n < 0 || !name.startsWith("cap_")) return undefined;
        mask |= 1n << BigInt(n);
      }
    for (const [, op, flags] of m[2]!.matchAll(/([=+-])([eip]*)/gi)) {
      if (op === "=") for (const f of ["e", "i", "p"] as const) sets[f] &= ~mask;
      for (const f of flags!.toLowerCase()) {
        const k = f as "e" | "i" | "p";
        if (op === "-") sets[k] &= ~mask;
        else sets[k] |= mask;
      }
    }
  }
  if (sets.e !== 0n && sets.e !== (sets.p | sets.i)) return undefined;
  return { permitted: sets.p, inheritable: sets.i, effective: sets.e !== 0n };
}

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
  const r = op(path.posix.basename(cmd ?? ""), args);
  return typeof r === "string" || r.op === "true" ? r : { ...r, cmd: cmd! };
}

function op(cmd: string, args: string[]): FsOp | string {
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
    case "setcap": {
      // setcap [-q] caps file [caps file …], or setcap -r file
      const p = flagsAndArgs(args, "qr");
      if (!p || !p.rest.length) return "setcap with flags or arguments polyarch does not model";
      if (p.flags.has("r")) {
        if (p.rest.length !== 1) return "setcap -r with other than one file";
        return { op: "setcap", files: [{ path: p.rest[0]! }] };
      }
      if (p.rest.length % 2) return "setcap without a file for each capability set";
      const files: { path: string; caps?: FileCaps }[] = [];
      for (let i = 0; i < p.rest.length; i += 2) {
        const caps = parseCaps(p.rest[i]!);
        if (!caps) return `setcap "${p.rest[i]}" (capability text polyarch does not model)`;
        files.push({ path: p.rest[i + 1]!, caps });
      }
      return { op: "setcap", files };
    }
    default:
      return cmd || "an empty command";
  }
}

/** Classifies a shell-form RUN command line. */
export function classifyRun(command: string): Classified {
  const pieces = command.split(/(&&|;)/);
  const parts = pieces.filter((_, i) => i % 2 === 0).map((s) => s.trim());
  const seps = pieces.filter((_, i) => i % 2 === 1) as (";" | "&&")[];
  if (parts.some((p) => p === "")) return { native: false, why: "an empty command in a list" };
  const ops: FsOp[] = [];
  for (const [i, part] of parts.entries()) {
    const argv = words(part);
    if (!argv)
      return { native: false, why: `"${part}" uses the shell (expansion, redirection, pipes or escapes)` };
    const r = one(argv);
    if (typeof r === "string") return { native: false, why: `${r} needs a process` };
    ops.push(seps[i] ? { ...r, then: seps[i] } : r);
  }
  return { native: true, ops };
}

/** Whether a shell runs the command text as this module reads it (a POSIX shell with -c). */
export function posixShell(shell: readonly string[]): boolean {
  const [cmd, ...args] = shell;
  return (
    ["sh", "bash", "dash", "ash", "ksh", "zsh"].includes(path.posix.basename(cmd ?? "")) &&
    args.at(-1) === "-c" &&
    args.slice(0, -1).every((a) => /^-[eux]+$|^-o$|^pipefail$|^errexit$/.test(a))
  );
}
