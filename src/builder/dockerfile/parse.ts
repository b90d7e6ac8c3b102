/**
 * Dockerfiles as BuildKit's frontend (syntax 1.x) reads them. The lines — comments, parser
 * directives, continuations with the escape character, heredoc bodies, flags — come from
 * dockerfile-ast; this file gives them their meaning: instructions checked against the
 * language, heredocs cut out of the text, the JSON form recognised, stages formed around
 * each FROM with its name, and the ARGs before the first FROM kept apart (their scope is
 * FROM lines only).
 */
import { DockerfileParser } from "dockerfile-ast";
import { PolyarchError } from "../../errors.js";
import type { Lexer } from "./shell.js";

interface AstFlag {
  getName(): string;
  getValue(): string | null;
}

export const INSTRUCTIONS = [
  "ADD",
  "ARG",
  "CMD",
  "COPY",
  "ENTRYPOINT",
  "ENV",
  "EXPOSE",
  "FROM",
  "HEALTHCHECK",
  "LABEL",
  "MAINTAINER",
  "ONBUILD",
  "RUN",
  "SHELL",
  "STOPSIGNAL",
  "USER",
  "VOLUME",
  "WORKDIR",
] as const;
export type Keyword = (typeof INSTRUCTIONS)[number];

/** Flags each instruction accepts (BuildKit 1.x); anything else is an error on its line. */
const FLAGS: Partial<Record<Keyword, readonly string[]>> = {
  FROM: ["platform"],
  RUN: ["mount", "network", "security"],
  COPY: ["from", "chown", "chmod", "link", "exclude", "parents"],
  ADD: ["chown", "chmod", "link", "exclude", "checksum", "keep-git-dir", "unpack"],
  HEALTHCHECK: ["interval", "timeout", "start-period", "start-interval", "retries"],
};

export interface Heredoc {
  name: string;
  content: string;
  /** False when the delimiter was quoted (<<"EOF"): no variable expansion. */
  expand: boolean;
}

export interface Instruction {
  keyword: Keyword;
  /** 1-based line of the instruction in the file. */
  line: number;
  /** 1-based line its last continuation ends on (line, for a one-line instruction). */
  endLine: number;
  /** Flags by name; a flag given several times (--mount, --exclude) keeps every value. */
  flags: Map<string, string[]>;
  /** The arguments after the flags, continuations joined, heredoc bodies removed. */
  args: string;
  /** The JSON (exec) form, when the arguments are a JSON array of strings. */
  json?: string[];
  heredocs: Heredoc[];
  /** The instruction as written, for messages and history (continuations joined). */
  original: string;
}

export interface Stage {
  index: number;
  /** The name from `FROM … AS name`, lowercased (BuildKit compares names case-insensitively). */
  name?: string;
  from: Instruction;
  instructions: Instruction[];
}

export interface Dockerfile {
  file: string;
  directives: Record<string, string>;
  lexer: Lexer;
  /** ARG instructions before the first FROM. */
  globalArgs: Instruction[];
  stages: Stage[];
}

export function syntaxError(file: string, line: number, message: string, hint?: string): PolyarchError {
  return new PolyarchError({
    code: "E_INPUT",
    message: `${file}:${line}: ${message}`,
    hint: hint ?? "Fix the Dockerfile at that line (the syntax is BuildKit's Dockerfile 1.x).",
  });
}

const HEREDOC = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

/** Cuts heredoc bodies out of an instruction's text (heredocs are legal in RUN, COPY and ADD). */
function splitHeredocs(text: string): { first: string; heredocs: Heredoc[] } | undefined {
  const nl = text.indexOf("\n");
  const first = nl < 0 ? text : text.slice(0, nl);
  const markers = [...first.matchAll(HEREDOC)];
  if (markers.length === 0) return undefined;
  let rest = nl < 0 ? [] : text.slice(nl + 1).split("\n");
  const heredocs: Heredoc[] = [];
  for (const m of markers) {
    const chomp = m[1] === "-";
    const name = m[3]!;
    const end = rest.findIndex((l) => (chomp ? l.replace(/^\t+/, "") : l) === name);
    if (end < 0)
      return { first, heredocs: [...heredocs, { name, content: "\u0000unterminated", expand: false }] };
    const body = rest.slice(0, end).map((l) => (chomp ? l.replace(/^\t+/, "") : l));
    heredocs.push({ name, content: body.length ? `${body.join("\n")}\n` : "", expand: m[2] === "" });
    rest = rest.slice(end + 1);
  }
  return { first, heredocs };
}

function jsonForm(args: string): string[] | undefined {
  const t = args.trim();
  if (!t.startsWith("[")) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Parses a Dockerfile's text; `file` names it in errors (file:line). */
export function parseDockerfile(text: string, file: string): Dockerfile {
  const ast = DockerfileParser.parse(text);
  const directives: Record<string, string> = {};
  for (const d of ast.getDirectives()) {
    const name = (d.getDirective() ?? "").toLowerCase();
    const value = d.getValue() ?? "";
    if (name === "escape" && value !== "\\" && value !== "`")
      throw syntaxError(
        file,
        d.getRange().start.line + 1,
        `invalid escape directive "${value}"`,
        "Use # escape=\\ or # escape=`.",
      );
    directives[name] = value;
  }
  const lexer: Lexer = { escape: directives["escape"] === "`" ? "`" : "\\" };
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of ast.getInstructions()) {
    const line = ins.getRange().start.line + 1;
    const raw = ins.getKeyword();
    const keyword = raw.toUpperCase() as Keyword;
    if (!(INSTRUCTIONS as readonly string[]).includes(keyword))
      throw syntaxError(file, line, `unknown instruction: ${raw}`);
    const flags = new Map<string, string[]>();
    for (const f of (ins as unknown as { getFlags?: () => AstFlag[] }).getFlags?.() ?? []) {
      const name = f.getName();
      const allowed = FLAGS[keyword] ?? [];
      if (!allowed.includes(name))
        throw syntaxError(
          file,
          line,
          `unknown flag --${name} for ${keyword}`,
          allowed.length
            ? `${keyword} takes ${allowed.map((a) => `--${a}`).join(", ")}.`
            : `${keyword} takes no flags.`,
        );
      const v = f.getValue() ?? "";
      flags.set(name, [...(flags.get(name) ?? []), v]);
    }
    let args = ins.getArgumentsContent() ?? "";
    let heredocs: Heredoc[] = [];
    if (keyword === "RUN" || keyword === "COPY" || keyword === "ADD") {
      const h = splitHeredocs(args);
      if (h) {
        const bad = h.heredocs.find((d) => d.content === "\u0000unterminated");
        if (bad) throw syntaxError(file, line, `heredoc <<${bad.name} has no closing ${bad.name} line`);
        args = h.first;
        heredocs = h.heredocs;
      }
    }
    const json = heredocs.length ? undefined : jsonForm(args);
    const instruction: Instruction = {
      keyword,
      line,
      endLine: Math.max(line, ins.getRange().end.line + 1),
      flags,
      args: args.trim(),
      ...(json ? { json } : {}),
      heredocs,
      original: [
        keyword,
        ...[...flags].flatMap(([n, vs]) => vs.map((v) => `--${n}=${v}`)),
        args.split("\n")[0]!.trim(),
      ]
        .filter(Boolean)
        .join(" "),
    };
    if (keyword === "FROM") {
      const words = instruction.args.split(/\s+/).filter(Boolean);
      let name: string | undefined;
      if (words.length === 3 && words[1]!.toLowerCase() === "as") name = words[2]!.toLowerCase();
      else if (words.length !== 1)
        throw syntaxError(
          file,
          line,
          `FROM takes an image and an optional "AS name", not "${instruction.args}"`,
        );
      if (name !== undefined && !/^[a-z][a-z0-9_.-]*$/.test(name))
        throw syntaxError(
          file,
          line,
          `invalid stage name "${name}"`,
          "Stage names start with a letter: letters, digits, _ . -.",
        );
      if (name && stages.some((s) => s.name === name))
        throw syntaxError(file, line, `duplicate stage name "${name}"`);
      stages.push({ index: stages.length, ...(name ? { name } : {}), from: instruction, instructions: [] });
      continue;
    }
    if (stages.length === 0) {
      if (keyword !== "ARG")
        throw syntaxError(
          file,
          line,
          `${keyword} before the first FROM`,
          "A Dockerfile starts with FROM (only ARG may come before it).",
        );
      globalArgs.push(instruction);
      continue;
    }
    if (
      keyword !== "HEALTHCHECK" &&
      keyword !== "ONBUILD" &&
      instruction.args === "" &&
      heredocs.length === 0
    )
      throw syntaxError(file, line, `${keyword} needs arguments`);
    stages.at(-1)!.instructions.push(instruction);
  }
  if (stages.length === 0)
    throw syntaxError(file, 1, "no FROM instruction", "A Dockerfile needs at least one FROM.");
  return { file, directives, lexer, globalArgs, stages };
}
