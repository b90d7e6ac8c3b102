/**
 * Words and variables as BuildKit's Dockerfile frontend reads them (its shell lexer,
 * moby/buildkit frontend/dockerfile/shell/lex.go): single quotes are literal, double quotes
 * allow `$` expansion, the escape character (\ or `) escapes outside single quotes, and
 * `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?m}`, `${V?m}` expand from the
 * variables in scope. An unset variable expands to nothing.
 */
import { PolyarchError } from "../../errors.js";

export interface Lexer {
  escape: "\\" | "`";
  /** Keep escape characters in the result (for ${V#pattern}, where \* means a literal *). */
  keepEscapes?: boolean;
}

export type Vars = ReadonlyMap<string, string>;

function lexError(message: string): PolyarchError {
  return new PolyarchError({
    code: "E_INPUT",
    message,
    hint: "Check the quoting and ${…} forms on that line.",
  });
}

/**
 * Processes `text` into words (split on unquoted white space), expanding variables. With
 * `split: false` the whole text is one word (ENV values, WORKDIR, USER…).
 */
export function processWords(text: string, vars: Vars, lex: Lexer, split = true): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let i = 0;
  const esc = lex.escape;
  const push = () => {
    if (inWord) words.push(cur);
    cur = "";
    inWord = false;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (split && /\s/.test(c)) {
      push();
      i++;
      continue;
    }
    inWord = true;
    if (c === esc) {
      if (i + 1 < text.length) {
        cur += lex.keepEscapes ? c + text[i + 1]! : text[i + 1];
        i += 2;
      } else {
        cur += c;
        i++;
      }
      continue;
    }
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw lexError(`unexpected end of text in a single-quoted string: ${text}`);
      cur += text.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw lexError(`unexpected end of text in a double-quoted string: ${text}`);
        const d = text[i]!;
        if (d === '"') {
          i++;
          break;
        }
        if (d === esc && i + 1 < text.length) {
          // In double quotes the escape only escapes ", $, the escape itself (and a newline).
          const n = text[i + 1]!;
          if (n === '"' || n === "$" || n === esc || n === "\n") {
            cur += n;
            i += 2;
            continue;
          }
          cur += d;
          i++;
          continue;
        }
        if (d === "$") {
          const r = expandAt(text, i, vars, lex);
          cur += r.value;
          i = r.next;
          continue;
        }
        cur += d;
        i++;
      }
      continue;
    }
    if (c === "$") {
      // An unquoted expansion that gives nothing makes no word ("${UNSET}" alone is no word).
      const r = expandAt(text, i, vars, lex);
      cur += r.value;
      if (r.value === "" && cur === "") inWord = false;
      i = r.next;
      continue;
    }
    cur += c;
    i++;
  }
  push();
  return split ? words : [words.join("")];
}

/** A heredoc body: only `$` expansions apply (quotes are literal); an escaped `$` stays a `$`. */
export function expandHeredoc(text: string, vars: Vars, lex: Lexer): string {
  let out = "";
  for (let i = 0; i < text.length;) {
    const c = text[i]!;
    if (c === lex.escape && text[i + 1] === "$") {
      out += "$";
      i += 2;
    } else if (c === "$") {
      const r = expandAt(text, i, vars, lex);
      out += r.value;
      i = r.next;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** One word: the text with quotes removed and variables expanded. */
export function processWord(text: string, vars: Vars, lex: Lexer): string {
  return processWords(text, vars, lex, false)[0] ?? "";
}

/** Expands the `$…` at text[i]; returns the value and the index after it. */
function expandAt(text: string, i: number, vars: Vars, lex: Lexer): { value: string; next: number } {
  const n = text[i + 1];
  if (n === undefined) return { value: "$", next: i + 1 };
  if (n === "{") {
    const close = matchingBrace(text, i + 1, lex.escape);
    if (close < 0) throw lexError(`missing } in ${text}`);
    const inner = text.slice(i + 2, close);
    const pm = /^([A-Za-z_][A-Za-z0-9_]*)(##?|%%?|\/\/?)([\s\S]*)$/.exec(inner);
    if (pm) return { value: patternOp(pm[1]!, pm[2]!, pm[3]!, vars, lex, text), next: close + 1 };
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])([\s\S]*))?$/.exec(inner);
    if (!m) throw lexError(`bad substitution \${${inner}} in ${text}`);
    const name = m[1]!;
    const op = m[2];
    const word = m[3] ?? "";
    const has = vars.has(name);
    const val = vars.get(name) ?? "";
    const set = op?.startsWith(":") ? has && val !== "" : has;
    let value = val;
    switch (op?.replace(":", "")) {
      case undefined:
        break;
      case "-":
        value = set ? val : processWord(word, vars, lex);
        break;
      case "+":
        value = set ? processWord(word, vars, lex) : "";
        break;
      case "?":
        if (!set) throw lexError(`${name}: ${word ? processWord(word, vars, lex) : "is not set"}`);
        break;
    }
    return { value, next: close + 1 };
  }
  const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
  if (!m) return { value: "$", next: i + 1 };
  return { value: vars.get(m[0]) ?? "", next: i + 1 + m[0].length };
}

/** A shell glob (* ? and escapes) as an anchored regular expression; `lazy` makes * shortest. */
function globRegex(pattern: string, lex: Lexer, lazy: boolean): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === lex.escape && i + 1 < pattern.length)
      re += pattern[++i]!.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    else if (c === "*") re += lazy ? "[\\s\\S]*?" : "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`^(?:${re})$`);
}

/**
 * `${V#p}` `${V##p}` (drop the shortest/longest prefix matching p), `${V%p}` `${V%%p}`
 * (suffix), `${V/p/r}` `${V//p/r}` (replace the first/every longest match of p by r).
 */
function patternOp(name: string, op: string, rest: string, vars: Vars, lex: Lexer, text: string): string {
  const value = vars.get(name) ?? "";
  if (op === "#" || op === "##" || op === "%" || op === "%%") {
    const pattern = processWord(rest, vars, { ...lex, keepEscapes: true });
    if (pattern === "") return value;
    const re = globRegex(pattern, lex, false);
    const cuts = [...Array(value.length + 1).keys()];
    if (op[0] === "#") {
      const hits = cuts.filter((n) => re.test(value.slice(0, n)));
      const n = op === "#" ? hits[0] : hits.at(-1);
      return n === undefined ? value : value.slice(n);
    }
    const hits = cuts.filter((n) => re.test(value.slice(n)));
    const n = op === "%" ? hits.at(-1) : hits[0];
    return n === undefined ? value : value.slice(0, n);
  }
  // Replacement: the pattern ends at the first unescaped "/".
  let j = 0;
  while (j < rest.length && rest[j] !== "/") j += rest[j] === lex.escape ? 2 : 1;
  if (j >= rest.length) throw lexError(`bad substitution \${${name}${op}${rest}} in ${text}: no replacement`);
  const pattern = processWord(rest.slice(0, j), vars, { ...lex, keepEscapes: true });
  const replacement = processWord(rest.slice(j + 1), vars, { ...lex, keepEscapes: true });
  if (pattern === "") return value;
  const re = globRegex(pattern, lex, false);
  let out = "";
  let i = 0;
  let replaced = false;
  while (i <= value.length) {
    let end = -1;
    if (!(replaced && op === "/"))
      for (let k = value.length; k > i; k--)
        if (re.test(value.slice(i, k))) {
          end = k;
          break;
        }
    if (end >= 0) {
      out += replacement;
      i = end;
      replaced = true;
      continue;
    }
    if (i < value.length) out += value[i];
    i++;
  }
  return out;
}

/** The } closing the ${ at text[open-1]: nested ${…} count, escaped characters do not. */
function matchingBrace(text: string, open: number, esc = "\\"): number {
  let depth = 1;
  for (let j = open + 1; j < text.length; j++) {
    const c = text[j];
    if (c === esc) j++;
    else if (c === "$" && text[j + 1] === "{") {
      depth++;
      j++;
    } else if (c === "}" && --depth === 0) return j;
  }
  return -1;
}

/** `key=value` words (ENV, LABEL, ARG): each word split at its first `=`. */
export function keyValues(
  text: string,
  vars: Vars,
  lex: Lexer,
  what: string,
): { key: string; value: string | undefined }[] {
  // The quotes of the key=value words are removed after the split, as BuildKit does.
  return processWords(text, vars, lex).map((w) => {
    const eq = w.indexOf("=");
    if (eq === 0) throw lexError(`${what}: "${w}" has no name before =`);
    return eq < 0 ? { key: w, value: undefined } : { key: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}
