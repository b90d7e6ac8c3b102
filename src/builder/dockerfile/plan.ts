/**
 * A plan per platform (issue 9 §2): which stages the target needs, what each FROM is for that
 * platform, and for every step whether polyarch runs it natively or a builder must — and why.
 *
 * 1. Global scope: the automatic platform args (TARGETPLATFORM, TARGETOS, TARGETARCH,
 *    TARGETVARIANT, BUILDPLATFORM, BUILDOS, BUILDARCH, BUILDVARIANT), then each ARG before the
 *    first FROM, its value from --build-arg (a template such as {{arch}} filled per platform)
 *    or its default. FROM lines expand in this scope only.
 * 2. The target stage (--target, else the last); the stages it needs through `FROM <stage>`,
 *    `COPY --from=<stage>` and `RUN --mount=from=<stage>`, in dependency order.
 * 3. Per stage: its platform (`FROM --platform=…`, else the target), its base (scratch,
 *    another stage, or an image for that platform), and per step the mode:
 *    - native: every instruction that needs no process, and a RUN whose commands are all on
 *      the closed list of trivial.ts;
 *    - delegated: any other RUN, with the reason; it runs on the build machine's own CPU when
 *      the stage's platform is the build platform (`--platform=$BUILDPLATFORM`), else under
 *      emulation unless a native builder serves that platform.
 */
import { PolyarchError } from "../../errors.js";
import { formatPlatform, parsePlatform, type Platform } from "../../platform/index.js";
import { type Dockerfile, type Instruction, type Stage, syntaxError } from "./parse.js";
import { keyValues, processWord } from "./shell.js";
import { classifyRun, type FsOp } from "./trivial.js";

export type StepMode = "native" | "delegated";

export interface StepPlan {
  instruction: Instruction;
  mode: StepMode;
  why: string;
  /** For a native RUN: the file-system operations it stands for. */
  ops?: FsOp[];
  /** For an ARG: the values it gives, in order (build arg, default, or the global value). */
  args?: [string, string][];
}

export type StageBase =
  { kind: "scratch" } | { kind: "stage"; index: number } | { kind: "image"; ref: string };

export interface StagePlan {
  index: number;
  name?: string;
  platform: Platform;
  base: StageBase;
  steps: StepPlan[];
  /** Stage indexes this stage reads files from (COPY --from, RUN --mount=from). */
  uses: number[];
  /** True when a delegated step must run on a CPU other than the build machine's. */
  emulated: boolean;
  /** ARG values in the stage's scope at its start (globals it redeclares, automatic args). */
  args: Map<string, string>;
}

export interface PlatformPlan {
  platform: Platform;
  target: number;
  /** The stages the target needs, dependencies first; the target is last. */
  stages: StagePlan[];
}

export interface PlanOptions {
  platforms: readonly Platform[];
  /** The build machine's platform (BUILDPLATFORM). */
  buildPlatform: Platform;
  /** --build-arg values; `{{os}}`, `{{arch}}`, `{{variant}}`, `{{platform}}` filled per platform. */
  buildArgs: Record<string, string>;
  target?: string;
}

const AUTOMATIC = [
  "TARGETPLATFORM",
  "TARGETOS",
  "TARGETARCH",
  "TARGETVARIANT",
  "BUILDPLATFORM",
  "BUILDOS",
  "BUILDARCH",
  "BUILDVARIANT",
] as const;

function platformArgs(target: Platform, build: Platform): Map<string, string> {
  return new Map([
    ["TARGETPLATFORM", formatPlatform(target)],
    ["TARGETOS", target.os],
    ["TARGETARCH", target.architecture],
    ["TARGETVARIANT", target.variant ?? ""],
    ["BUILDPLATFORM", formatPlatform(build)],
    ["BUILDOS", build.os],
    ["BUILDARCH", build.architecture],
    ["BUILDVARIANT", build.variant ?? ""],
  ]);
}

/** Fills a build-arg template for one platform (seed 003's ARCH={{arch}}). */
export function fillTemplate(value: string, p: Platform): string {
  const vars: Record<string, string> = {
    os: p.os,
    arch: p.architecture,
    variant: p.variant ?? "",
    platform: formatPlatform(p),
  };
  return value.replace(/\{\{\s*(\w+)\s*\}\}/g, (m, k: string) => {
    const v = vars[k];
    if (v === undefined)
      throw new PolyarchError({
        code: "E_INPUT",
        message: `unknown template ${m} in a build arg`,
        hint: "Build-arg templates: {{os}}, {{arch}}, {{variant}}, {{platform}}.",
      });
    return v;
  });
}

/** The stage a `--from` / `FROM` name refers to: a name, or an index of an earlier stage. */
function stageRef(df: Dockerfile, ref: string, before: number): number | undefined {
  const byName = df.stages.findIndex((s) => s.name === ref.toLowerCase());
  if (byName >= 0 && byName < before) return byName;
  if (/^[0-9]+$/.test(ref)) {
    const i = Number(ref);
    if (i < before) return i;
  }
  return undefined;
}

/** Per-stage dependencies: the stage FROM names and those COPY --from / RUN --mount=from read. */
function dependencies(df: Dockerfile, s: Stage, fromImage: string): { base?: number; uses: number[] } {
  const base = stageRef(df, fromImage, s.index);
  const uses: number[] = [];
  for (const ins of s.instructions) {
    const froms = [
      ...(ins.keyword === "COPY" ? (ins.flags.get("from") ?? []) : []),
      ...(ins.keyword === "RUN"
        ? (ins.flags.get("mount") ?? []).flatMap((m) => {
            const f = /(?:^|,)from=([^,]+)/.exec(m);
            return f ? [f[1]!] : [];
          })
        : []),
    ];
    for (const f of froms) {
      const i = stageRef(df, f, s.index);
      if (i !== undefined && !uses.includes(i)) uses.push(i);
      else if (i === undefined && df.stages.some((x) => x.name === f.toLowerCase()))
        throw syntaxError(
          df.file,
          ins.line,
          `--from=${f} names a stage that comes later`,
          "A stage can only read from stages above it.",
        );
    }
  }
  return { ...(base !== undefined ? { base } : {}), uses };
}

function classify(ins: Instruction): { mode: StepMode; why: string; ops?: FsOp[] } {
  if (ins.keyword !== "RUN") return { mode: "native", why: "no process needed" };
  if (ins.flags.size > 0)
    return { mode: "delegated", why: `RUN with --${[...ins.flags.keys()].join(", --")}` };
  if (ins.heredocs.length) return { mode: "delegated", why: "RUN with a heredoc script" };
  if (ins.json) {
    const c = classifyRun(ins.json.map((w) => `'${w.replaceAll("'", "")}'`).join(" "));
    return c.native
      ? { mode: "native", why: "trivial file operations", ops: c.ops }
      : { mode: "delegated", why: c.why };
  }
  const c = classifyRun(ins.args);
  return c.native
    ? { mode: "native", why: "trivial file operations", ops: c.ops }
    : { mode: "delegated", why: c.why };
}

/** Plans every platform. Errors name the Dockerfile and line. */
export function planDockerfile(df: Dockerfile, opts: PlanOptions): PlatformPlan[] {
  const lex = df.lexer;
  // 2. The target stage.
  let target = df.stages.length - 1;
  if (opts.target !== undefined) {
    // By name, or (as buildah takes it) by the index of a stage.
    const byName = df.stages.findIndex((s) => s.name === opts.target!.toLowerCase());
    const i =
      byName >= 0 || !/^[0-9]+$/.test(opts.target) || Number(opts.target) >= df.stages.length
        ? byName
        : Number(opts.target);
    if (i < 0)
      throw new PolyarchError({
        code: "E_INPUT",
        message: `${df.file} has no stage named "${opts.target}"`,
        hint: `Stages: ${df.stages.map((s) => s.name ?? String(s.index)).join(", ")}.`,
      });
    target = i;
  }
  for (const name of Object.keys(opts.buildArgs))
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new PolyarchError({
        code: "E_INPUT",
        message: `build arg "${name}" is not a valid name`,
        hint: "Build arg names are letters, digits and _, not starting with a digit.",
      });
  return opts.platforms.map((platform) => {
    const buildArgs = new Map(Object.entries(opts.buildArgs).map(([k, v]) => [k, fillTemplate(v, platform)]));
    // 1. The global scope.
    const global = platformArgs(platform, opts.buildPlatform);
    const declared = new Map<string, string>();
    for (const ins of df.globalArgs) {
      for (const { key, value } of keyValues(ins.args, global, lex, `${df.file}:${ins.line}: ARG`)) {
        const v =
          buildArgs.get(key) ?? (value !== undefined ? processWord(value, global, lex) : global.get(key));
        if (v !== undefined) {
          global.set(key, v);
          declared.set(key, v);
        }
      }
    }
    // 3. Each stage, as far as the target needs it.
    const plans = new Map<number, StagePlan>();
    const planStage = (i: number, chain: number[]): StagePlan => {
      const have = plans.get(i);
      if (have) return have;
      const s = df.stages[i]!;
      const fromWords = s.from.args.split(/\s+/);
      const expand = (text: string, what: string) => {
        try {
          return processWord(text, global, lex);
        } catch (e) {
          throw syntaxError(df.file, s.from.line, `${what}: ${(e as Error).message}`);
        }
      };
      const image = expand(fromWords[0]!, "FROM");
      if (image === "")
        throw syntaxError(
          df.file,
          s.from.line,
          `FROM ${fromWords[0]} expands to nothing`,
          "Set that build arg (--build-arg) or give the ARG a default.",
        );
      const platText = s.from.flags.get("platform")?.[0];
      let stagePlatform = platform;
      if (platText !== undefined) {
        const p = expand(platText, "FROM --platform");
        try {
          stagePlatform = parsePlatform(p);
        } catch (e) {
          throw syntaxError(
            df.file,
            s.from.line,
            `FROM --platform=${platText} is "${p}": ${(e as Error).message}`,
          );
        }
      }
      const deps = dependencies(df, s, image);
      const base: StageBase =
        deps.base !== undefined
          ? { kind: "stage", index: deps.base }
          : image.toLowerCase() === "scratch"
            ? { kind: "scratch" }
            : { kind: "image", ref: image };
      for (const d of [...(deps.base !== undefined ? [deps.base] : []), ...deps.uses]) {
        if (chain.includes(d))
          throw syntaxError(df.file, s.from.line, "stages depend on each other in a circle");
        planStage(d, [...chain, i]);
      }
      // Stage scope: automatic args and globals are visible only once declared with ARG.
      const args = new Map<string, string>();
      const steps: StepPlan[] = s.instructions.map((ins) => {
        const given: [string, string][] = [];
        if (ins.keyword === "ARG") {
          const scope = new Map([...args]);
          for (const { key, value } of keyValues(ins.args, scope, lex, `${df.file}:${ins.line}: ARG`)) {
            const auto = (AUTOMATIC as readonly string[]).includes(key)
              ? platformArgs(platform, opts.buildPlatform).get(key)
              : undefined;
            const v =
              buildArgs.get(key) ??
              (value !== undefined ? processWord(value, scope, lex) : (declared.get(key) ?? auto));
            if (v !== undefined) {
              args.set(key, v);
              given.push([key, v]);
            }
          }
        }
        return { instruction: ins, ...classify(ins), ...(ins.keyword === "ARG" ? { args: given } : {}) };
      });
      const delegated = steps.some((st) => st.mode === "delegated");
      const plan: StagePlan = {
        index: i,
        ...(s.name ? { name: s.name } : {}),
        platform: stagePlatform,
        base,
        steps,
        uses: deps.uses,
        emulated: delegated && formatPlatform(stagePlatform) !== formatPlatform(opts.buildPlatform),
        args,
      };
      plans.set(i, plan);
      return plan;
    };
    planStage(target, []);
    const order = [...plans.values()].sort((a, b) => a.index - b.index);
    return { platform, target, stages: order };
  });
}

/** The plan as lines, for --dry-run and the summary. */
export function describeDockerfilePlan(df: Dockerfile, plans: readonly PlatformPlan[]): string[] {
  const lines: string[] = [];
  for (const p of plans) {
    lines.push(`${formatPlatform(p.platform)}: stages ${p.stages.map((s) => s.name ?? s.index).join(" → ")}`);
    for (const s of p.stages) {
      const base =
        s.base.kind === "scratch"
          ? "scratch"
          : s.base.kind === "stage"
            ? `stage ${df.stages[s.base.index]!.name ?? s.base.index}`
            : `${s.base.ref} (${formatPlatform(s.platform)})`;
      lines.push(
        `  stage ${s.name ?? s.index} on ${base}${s.emulated ? " — needs a builder for " + formatPlatform(s.platform) + " (emulated unless a native one is configured)" : ""}`,
      );
      for (const st of s.steps)
        lines.push(
          `    ${st.mode === "native" ? "native   " : "delegated"} ${df.file}:${st.instruction.line} ${st.instruction.original}${st.mode === "delegated" ? ` (${st.why})` : ""}`,
        );
    }
  }
  return lines;
}
