/**
 * polyarch.yaml: its model and its validation. Errors name the file, line and key:
 *   polyarch.yaml:7: images[0]: unknown key "platfroms" (did you mean "platforms"?)
 */
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { PolyarchError } from "../errors.js";
import { isBuilderEndpoint } from "../builder/dockerfile/backends.js";
import type { TagRule } from "../tags/index.js";

export interface ImageConfigFile {
  name: string;
  dir: string;
  main: string;
  /** More main packages built into the image (`mains: [., ./cmd/soda]` gives ./cmd/soda). */
  extraMains?: string[];
  builder: "go" | "dockerfile";
  /** Dockerfile images: the Dockerfile (relative to dir) and the build context (default dir). */
  dockerfile?: string;
  context?: string;
  target?: string;
  buildArgs: Record<string, string>;
  /** Registry repository for the build cache of delegated stages. */
  cache?: string;
  base?: string;
  platforms?: string[];
  user?: string;
  ports: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  ldflags?: string;
  /** Keep DWARF and the symbol table in the binaries (default: left out). */
  debugInfo?: boolean;
  /** cgo: true (static on scratch, dynamic on a base), static or dynamic; false turns it off. */
  cgo?: boolean | "static" | "dynamic";
  /** C compiler by platform for cgo builds ("linux/arm64": aarch64-linux-gnu-gcc). */
  cc?: Record<string, string>;
  /** Replaces the default entrypoint ([/app/<binary>]), e.g. [/app/api, --serve]. */
  entrypoint?: string[];
}

export interface EnvironmentConfig {
  registry?: string;
  repository?: string;
}

export interface PolyarchFile {
  file: string;
  images: ImageConfigFile[];
  platforms?: string[];
  destination: { registry?: string; repository?: string };
  tags?: TagRule[];
  platformTags?: "arch" | "os-arch";
  environments: Record<string, EnvironmentConfig>;
  defaultEnvironment?: string;
  mirror?: { to?: string; images: string[] };
  /** Dockerfile builders by platform: "buildah", "docker[+<DOCKER_HOST>]" or a BuildKit daemon (tcp://, unix://). */
  builders?: Record<string, string>;
  test?: string;
  lint?: string;
}

type Path = (string | number)[];

class Located extends Error {
  constructor(
    readonly path: Path,
    message: string,
  ) {
    super(message);
  }
}

function showPath(p: Path): string {
  return p.map((x, i) => (typeof x === "number" ? `[${x}]` : i === 0 ? x : `.${x}`)).join("");
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

function obj(v: unknown, p: Path, allowed: readonly string[]): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Located(p, "expected a mapping (key: value)");
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      const near = allowed.map((a) => ({ a, d: distance(k, a) })).sort((x, y) => x.d - y.d)[0];
      throw new Located(
        [...p, k],
        `unknown key "${k}"${near && near.d <= 2 ? ` (did you mean "${near.a}"?)` : ""}; allowed: ${allowed.join(", ")}`,
      );
    }
  }
  return o;
}
function str(v: unknown, p: Path): string {
  if (typeof v === "number") return String(v);
  if (typeof v !== "string" || v === "") throw new Located(p, "expected a non-empty string");
  return v;
}
function optStr(v: unknown, p: Path): string | undefined {
  return v === undefined || v === null ? undefined : str(v, p);
}
function strList(v: unknown, p: Path): string[] {
  if (typeof v === "string") return v.split(/[,\s]+/).filter(Boolean);
  if (!Array.isArray(v)) throw new Located(p, "expected a list");
  return v.map((x, i) => str(x, [...p, i]));
}
function strMap(v: unknown, p: Path): Record<string, string> {
  if (v === undefined || v === null) return {};
  const o = obj(v, p, Object.keys(v));
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, str(x, [...p, k])]));
}

const RULES = ["commit", "commit-short", "latest", "branch", "semver", "raw"] as const;

function tagRule(v: unknown, p: Path): TagRule {
  if (typeof v === "string") {
    if (!(RULES as readonly string[]).includes(v))
      throw new Located(p, `unknown tag rule "${v}"; rules: ${RULES.join(", ")}`);
    if (v === "raw") throw new Located(p, 'tag rule raw needs a value: "raw: stable"');
    return { type: v } as TagRule;
  }
  const o = obj(v, p, RULES);
  const keys = Object.keys(o);
  if (keys.length !== 1)
    throw new Located(p, "a tag rule is one of: semver, commit, commit-short, latest, branch, raw");
  const type = keys[0] as (typeof RULES)[number];
  const body = o[type];
  const q = [...p, type];
  if (type === "raw") {
    if (typeof body === "string") return { type, value: body };
    const b = obj(body, q, ["value", "prefix", "suffix"]);
    return { type, value: str(b["value"], [...q, "value"]), ...affix(b, q) };
  }
  if (body === null || body === undefined) return { type };
  if (type === "commit-short" && typeof body === "number") return { type, length: body };
  const allowed =
    type === "commit-short"
      ? ["length", "prefix", "suffix"]
      : type === "latest"
        ? ["always", "prefix", "suffix"]
        : ["prefix", "suffix"];
  const b = obj(body, q, allowed);
  if (type === "commit-short") {
    const length = b["length"];
    if (
      length !== undefined &&
      (typeof length !== "number" || !Number.isInteger(length) || length < 4 || length > 40)
    )
      throw new Located([...q, "length"], "expected a whole number from 4 to 40");
    return { type, ...(length !== undefined ? { length: length } : {}), ...affix(b, q) };
  }
  if (type === "latest") {
    const always = b["always"];
    if (always !== undefined && typeof always !== "boolean")
      throw new Located([...q, "always"], "expected true or false");
    return { type, ...(always !== undefined ? { always: always } : {}), ...affix(b, q) };
  }
  return { type, ...affix(b, q) };
}
function affix(b: Record<string, unknown>, q: Path): { prefix?: string; suffix?: string } {
  const prefix = optStr(b["prefix"], [...q, "prefix"]);
  const suffix = optStr(b["suffix"], [...q, "suffix"]);
  return { ...(prefix ? { prefix } : {}), ...(suffix ? { suffix } : {}) };
}

/** Ports as the image config writes them (8080, 8080/udp), checked here so a dry run refuses what a run would. */
function portList(v: unknown, p: Path): string[] {
  if (!Array.isArray(v)) throw new Located(p, "expected a list of ports, e.g. [8080, 9090/udp]");
  return v.map((x, i) => {
    const s = typeof x === "number" ? String(x) : str(x, [...p, i]);
    const m = /^([0-9]{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(s.trim());
    if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
      throw new Located(
        [...p, i],
        `${JSON.stringify(x)} is not a port (1–65535, optionally /tcp, /udp or /sctp)`,
      );
    return s.trim();
  });
}

function image(v: unknown, p: Path): ImageConfigFile {
  const o = obj(v, p, [
    "name",
    "dir",
    "workDir",
    "main",
    "mains",
    "builder",
    "base",
    "platforms",
    "entrypoint",
    "user",
    "ports",
    "env",
    "labels",
    "ldflags",
    "debugInfo",
    "cgo",
    "cc",
    "dockerfile",
    "context",
    "target",
    "buildArgs",
    "cache",
  ]);
  // An image with a dockerfile is a Dockerfile build; otherwise a Go package.
  const builder = o["builder"] ?? (o["dockerfile"] !== undefined ? "dockerfile" : "go");
  if (builder !== "go" && builder !== "dockerfile")
    throw new Located(
      [...p, "builder"],
      `unknown builder ${JSON.stringify(builder)}; builders: go, dockerfile`,
    );
  const dir = optStr(o["dir"], [...p, "dir"]) ?? optStr(o["workDir"], [...p, "workDir"]) ?? ".";
  const name =
    optStr(o["name"], [...p, "name"]) ?? (dir === "." ? undefined : dir.split("/").filter(Boolean).pop());
  if (!name) throw new Located(p, "an image needs a name (or a dir to take it from)");
  if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name))
    throw new Located(
      [...p, "name"],
      `"${name}" is not a valid repository name (lowercase letters, digits, . _ -)`,
    );
  const out: ImageConfigFile = {
    name,
    dir,
    main: optStr(o["main"], [...p, "main"]) ?? ".",
    builder,
    buildArgs: strMap(o["buildArgs"], [...p, "buildArgs"]),
    ports: o["ports"] === undefined ? [] : portList(o["ports"], [...p, "ports"]),
    env: strMap(o["env"], [...p, "env"]),
    labels: strMap(o["labels"], [...p, "labels"]),
  };
  // mains: [entrypoint package, more…] — one image carrying several binaries.
  if (o["mains"] !== undefined) {
    if (o["main"] !== undefined) throw new Located([...p, "mains"], "give main or mains, not both");
    const mains = strList(o["mains"], [...p, "mains"]);
    if (!mains.length) throw new Located([...p, "mains"], "mains lists no package");
    out.main = mains[0]!;
    if (mains.length > 1) out.extraMains = mains.slice(1);
  }
  const base = optStr(o["base"], [...p, "base"]);
  if (base && base !== "scratch") out.base = base;
  if (o["platforms"] !== undefined) out.platforms = strList(o["platforms"], [...p, "platforms"]);
  const user = optStr(o["user"], [...p, "user"]);
  if (user) out.user = user;
  const ldflags = optStr(o["ldflags"], [...p, "ldflags"]);
  if (ldflags) out.ldflags = ldflags;
  const debugInfo = o["debugInfo"];
  if (debugInfo !== undefined && debugInfo !== null) {
    if (typeof debugInfo !== "boolean")
      throw new Located([...p, "debugInfo"], `expected true or false, not ${JSON.stringify(debugInfo)}`);
    if (debugInfo) out.debugInfo = true;
  }
  const cgo = o["cgo"];
  if (cgo !== undefined && cgo !== null) {
    if (cgo !== true && cgo !== false && cgo !== "static" && cgo !== "dynamic")
      throw new Located([...p, "cgo"], `expected true, false, static or dynamic, not ${JSON.stringify(cgo)}`);
    out.cgo = cgo;
  }
  if (o["cc"] !== undefined && o["cc"] !== null) out.cc = strMap(o["cc"], [...p, "cc"]);
  if (builder === "dockerfile") {
    out.dockerfile = optStr(o["dockerfile"], [...p, "dockerfile"]) ?? "Dockerfile";
    const context = optStr(o["context"], [...p, "context"]);
    if (context) out.context = context;
    const target = optStr(o["target"], [...p, "target"]);
    if (target) out.target = target;
    const cache = optStr(o["cache"], [...p, "cache"]);
    if (cache) out.cache = cache;
    for (const k of [
      "main",
      "ldflags",
      "debugInfo",
      "cgo",
      "cc",
      "entrypoint",
      "user",
      "env",
      "ports",
    ] as const)
      if (o[k] !== undefined)
        throw new Located([...p, k], `${k} is for Go images; a Dockerfile image sets it in the Dockerfile`);
  } else {
    for (const k of ["context", "target", "buildArgs", "cache"] as const)
      if (o[k] !== undefined)
        throw new Located([...p, k], `${k} is for Dockerfile images (add dockerfile: Dockerfile)`);
  }
  if (o["entrypoint"] !== undefined) {
    if (!Array.isArray(o["entrypoint"]) || o["entrypoint"].length === 0)
      throw new Located([...p, "entrypoint"], "expected a non-empty list, e.g. [/app/api, --serve]");
    out.entrypoint = (o["entrypoint"] as unknown[]).map((x, i) => str(x, [...p, "entrypoint", i]));
  }
  return out;
}

function validate(root: unknown, file: string): PolyarchFile {
  const o = obj(
    root ?? {},
    [],
    [
      "images",
      "platforms",
      "destination",
      "tags",
      "platformTags",
      "environments",
      "defaultEnvironment",
      "mirror",
      "builders",
      "test",
      "lint",
    ],
  );
  if (!Array.isArray(o["images"]) || o["images"].length === 0)
    throw new Located(["images"], "list at least one image to build");
  const images = (o["images"] as unknown[]).map((x, i) => image(x, ["images", i]));
  const names = new Set<string>();
  images.forEach((im, i) => {
    if (names.has(im.name)) throw new Located(["images", i, "name"], `two images are named "${im.name}"`);
    names.add(im.name);
  });
  const dest =
    o["destination"] == null ? {} : obj(o["destination"], ["destination"], ["registry", "repository"]);
  const envs =
    o["environments"] == null ? {} : obj(o["environments"], ["environments"], Object.keys(o["environments"]));
  const environments: Record<string, EnvironmentConfig> = {};
  for (const [k, v] of Object.entries(envs)) {
    const e = obj(v, ["environments", k], ["registry", "repository"]);
    const registry = optStr(e["registry"], ["environments", k, "registry"]);
    const repository = optStr(e["repository"], ["environments", k, "repository"]);
    environments[k] = { ...(registry ? { registry } : {}), ...(repository ? { repository } : {}) };
  }
  const out: PolyarchFile = {
    file,
    images,
    destination: {
      ...(optStr(dest["registry"], ["destination", "registry"])
        ? { registry: str(dest["registry"], ["destination", "registry"]) }
        : {}),
      ...(optStr(dest["repository"], ["destination", "repository"])
        ? { repository: str(dest["repository"], ["destination", "repository"]) }
        : {}),
    },
    environments,
  };
  if (o["platforms"] !== undefined) out.platforms = strList(o["platforms"], ["platforms"]);
  if (o["tags"] != null) {
    if (!Array.isArray(o["tags"])) throw new Located(["tags"], "expected a list of tag rules");
    out.tags = (o["tags"] as unknown[]).map((x, i) => tagRule(x, ["tags", i]));
  }
  if (o["platformTags"] !== undefined) {
    if (o["platformTags"] !== "arch" && o["platformTags"] !== "os-arch")
      throw new Located(["platformTags"], 'expected "arch" or "os-arch"');
    out.platformTags = o["platformTags"];
  }
  const defEnv = optStr(o["defaultEnvironment"], ["defaultEnvironment"]);
  if (defEnv) {
    if (!environments[defEnv])
      throw new Located(
        ["defaultEnvironment"],
        `"${defEnv}" is not one of the environments (${Object.keys(environments).join(", ") || "none"})`,
      );
    out.defaultEnvironment = defEnv;
  }
  if (o["mirror"] != null) {
    const m = obj(o["mirror"], ["mirror"], ["to", "images"]);
    const to = optStr(m["to"], ["mirror", "to"]);
    out.mirror = {
      ...(to ? { to } : {}),
      images: m["images"] === undefined ? [] : strList(m["images"], ["mirror", "images"]),
    };
  }
  if (o["builders"] != null) {
    const b = strMap(o["builders"], ["builders"]);
    for (const [k, v] of Object.entries(b)) {
      if (!/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/.test(k))
        throw new Located(["builders", k], `"${k}" is not a platform (write linux/arm64)`);
      if (!isBuilderEndpoint(v))
        throw new Located(
          ["builders", k],
          `"${v}" is not a builder: buildah, docker[+ssh://host|+unix:///path][?network=host], or a BuildKit daemon as tcp://host:port or unix:///path`,
        );
    }
    out.builders = b;
  }
  const test = optStr(o["test"], ["test"]);
  if (test) out.test = test;
  const lint = optStr(o["lint"], ["lint"]);
  if (lint) out.lint = lint;
  return out;
}

/** Parses and validates polyarch.yaml text; errors carry file:line and the key. */
export function parsePolyarchFile(text: string, file: string): PolyarchFile {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lc.linePos(offset).line);
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `${file}:${lineOf(e.pos[0])}: not valid YAML (${e.message.split("\n")[0]})`,
      hint: "Fix the YAML syntax at that line.",
    });
  }
  let js: unknown;
  try {
    // yaml refuses documents whose aliases expand beyond 100 (a "billion laughs" bomb).
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `${file}: cannot be read as data (${(e as Error).message.split("\n")[0]})`,
      hint: "Use plain YAML: polyarch.yaml needs no anchors or aliases, and too many are refused.",
    });
  }
  try {
    return validate(js, file);
  } catch (e) {
    if (!(e instanceof Located)) throw e;
    // The deepest node that exists on the path gives the line.
    let node: Node | undefined;
    for (let n = e.path.length; n >= 0 && !node; n--) {
      const got = doc.getIn(e.path.slice(0, n), true);
      if (got && (isMap(got) || isSeq(got) || isScalar(got))) node = got;
    }
    // For a key, point at the key itself when the value is absent or the key is unknown.
    const line = lineOf(node?.range?.[0]);
    const where = e.path.length ? `${showPath(e.path)}: ` : "";
    throw new PolyarchError({
      code: "E_CONFIG",
      message: `${file}:${line}: ${where}${e.message}`,
      hint: "See the polyarch.yaml reference in the README, or start over with polyarch init.",
    });
  }
}
