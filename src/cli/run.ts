import { appendFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PolyarchError } from "../errors.js";
import { readGit } from "../git/index.js";
import {
  buildRequestFor,
  describePlan,
  executeRun,
  planRun,
  type RunEvent,
  type Stage,
  STAGES,
} from "../pipeline/index.js";
import { formatPlatform } from "../platform/index.js";
import { exec } from "../util/exec.js";
import { type CliIO, humanSize, table } from "./_io.js";
import { LiveView } from "./_live.js";
import { resolveSourceDateEpoch } from "./_resolve.js";
import { makeOrchestrator } from "./_world.js";
import { DockerfileBuilder } from "../builder/dockerfile/index.js";
import { describeDockerfilePlan } from "../builder/dockerfile/plan.js";
import { ciBranch, loadResolved, withBasePlatforms } from "./config.js";
import { checkImages } from "../config/index.js";

export interface RunFlags {
  env?: string;
  registry?: string;
  repository?: string;
  platform?: string[];
  config?: string;
  dryRun?: boolean;
  stages?: string;
  skip?: string[];
  json?: boolean;
  jobs?: string;
  insecure?: string[];
  tagSuffix?: string;
}

function stagesFrom(flags: RunFlags): Stage[] {
  const wanted = flags.stages ? flags.stages.split(",").map((s) => s.trim()) : STAGES;
  const skip = new Set((flags.skip ?? []).flatMap((s) => s.split(",")));
  for (const s of [...wanted, ...skip]) {
    if (!(STAGES as string[]).includes(s)) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `unknown stage "${s}"`,
        hint: `Stages: ${STAGES.join(", ")}.`,
      });
    }
  }
  return STAGES.filter((s) => wanted.includes(s) && !skip.has(s));
}

export async function runRun(flags: RunFlags, io: CliIO, signal?: AbortSignal): Promise<number> {
  const started = Date.now();
  // 1. Resolve everything before any stage: config, git, time, tags, the plan.
  const resolved = await loadResolved(io, flags);
  await checkImages(resolved);
  const c = await withBasePlatforms(resolved, io, {
    ...(flags.insecure ? { insecure: flags.insecure } : {}),
    ...(signal ? { signal } : {}),
  });
  const hint = ciBranch(io.env);
  const git = await readGit(io.cwd, { env: io.env, ...(hint ? { branchHint: hint } : {}) });
  // The same rule as build: SOURCE_DATE_EPOCH, else the last commit's time.
  const epoch = (await resolveSourceDateEpoch(io.env, io.cwd, exec)).value;
  const plan = planRun(c, git, {
    stages: stagesFrom(flags),
    sourceDateEpoch: epoch,
    outDir: path.join(io.cwd, "out", "oci"),
    ...(flags.tagSuffix ? { tagSuffix: flags.tagSuffix } : {}),
  });
  const lines = describePlan(plan);
  // Dockerfile images: every step, native or delegated and why, checked before any stage runs.
  if (plan.images.some((im) => im.dockerfile)) {
    const orch = makeOrchestrator(io);
    try {
      for (const im of plan.images) {
        if (!im.dockerfile) continue;
        const b = await orch.builder(buildRequestFor(im, epoch));
        if (!(b instanceof DockerfileBuilder)) continue;
        lines.push(
          ...describeDockerfilePlan(await b.dockerfile(), await b.plan()).map(
            (l) => `        ${im.name} ${l}`,
          ),
        );
      }
    } finally {
      await orch.close();
    }
  }
  if (flags.dryRun) {
    if (flags.json)
      io.stdout.write(
        `${JSON.stringify({ plan: lines, images: plan.images.map((i) => ({ name: i.name, platforms: i.platforms.map(formatPlatform), tags: i.tags, target: i.target })) }, null, 2)}\n`,
      );
    else io.stdout.write(`${lines.join("\n")}\n(dry run: nothing was run, built or published)\n`);
    return 0;
  }
  const stamp = () => new Date().toISOString().slice(11, 19);
  let quietLines = false;
  const say = (s: string) => {
    if (!flags.json && !quietLines) io.stderr.write(`[${stamp()}] ${s}\n`);
  };
  if (git.dirty) say("warning: the working tree has uncommitted changes; tags carry -dirty");
  for (const l of lines) say(`plan: ${l}`);
  const live =
    !flags.json && (io.stderr as { isTTY?: boolean }).isTTY === true && !io.env["CI"]
      ? new LiveView(io.stderr)
      : undefined;
  if (live) {
    live.header(`polyarch run: ${plan.version}${git.dirty ? " (dirty)" : ""}`);
    for (const im of plan.images)
      for (const p of im.platforms) live.set(`${im.name} ${formatPlatform(p)}`, "waiting");
  }
  const onEvent = (e: RunEvent) => {
    if (flags.json) io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
    if (live) {
      const im = plan.images.find((i) => i.name === e.image);
      const all = (status: string) =>
        im?.platforms.forEach((p) => live.set(`${e.image} ${formatPlatform(p)}`, status));
      if (e.type === "stage" && e.state === "start" && e.stage !== "build")
        all(e.stage === "publish" ? "uploading…" : `${e.stage}…`);
      else if (e.type === "stage" && e.state === "done" && e.stage === "test") all("tested");
      else if (e.type === "build" && e.event.type === "step-start")
        live.set(`${e.image} ${formatPlatform(e.event.platform)}`, `${stepVerb(e.event.step)}…`);
      else if (e.type === "build" && e.event.type === "step-done")
        live.set(
          `${e.image} ${formatPlatform(e.event.platform)}`,
          `layering (${stepPast(e.event.step)} in ${(e.event.ms / 1000).toFixed(1)}s)`,
        );
      else if (e.type === "build" && e.event.type === "image")
        live.set(`${e.image} ${formatPlatform(e.event.platform)}`, `built ${e.event.digest.slice(0, 19)}`);
      else if (e.type === "published")
        all(
          `done → ${e.reference}@${e.digest.slice(0, 19)}${e.uploadedBytes !== undefined ? ` (${humanSize(e.uploadedBytes)} uploaded)` : ""}`,
        );
      return;
    }
    if (e.type === "stage")
      say(
        `${e.stage} ${e.image} ${e.state === "start" ? "…" : `done in ${((e.ms ?? 0) / 1000).toFixed(1)}s`}`,
      );
    else if (e.type === "build" && e.event.type === "warning") say(`warning: ${e.event.message}`);
    else if (e.type === "build" && e.event.type === "note") say(`build ${e.image} ${e.event.message}`);
    else if (e.type === "build" && e.event.type === "step-done")
      say(
        `build ${e.image} ${formatPlatform(e.event.platform)} ${stepPast(e.event.step)} in ${(e.event.ms / 1000).toFixed(1)}s${e.event.where && e.event.where !== "native" ? ` on ${e.event.where}` : ""}`,
      );
    else if (e.type === "build" && e.event.type === "layer" && e.event.platform !== "all")
      say(
        `build ${e.image} ${formatPlatform(e.event.platform)} layer ${humanSize(e.event.size)}${e.event.cached ? " (cached)" : ""}`,
      );
    else if (e.type === "published")
      say(
        `publish ${e.image} → ${e.reference}@${e.digest}${e.uploadedBytes !== undefined ? ` (${humanSize(e.uploadedBytes)} uploaded)` : ""}`,
      );
  };
  // With the live view, per-step lines would scroll it away (a failing stage still shows its output in the error).
  quietLines = live !== undefined;
  const jobs = flags.jobs ? Number(flags.jobs) : os.availableParallelism();
  const orch = makeOrchestrator(io, {
    ...(flags.insecure ? { insecure: flags.insecure } : {}),
    jobs,
    builders: c.builders,
  });
  let results;
  try {
    results = await executeRun(plan, {
      orch,
      stageEnv: { ...io.env, CGO_ENABLED: io.env["CGO_ENABLED"] ?? "0" },
      ...(signal ? { signal } : {}),
      onEvent,
      onOutput: (image, stage, chunk) => {
        if (!flags.json && !live)
          for (const l of chunk.split("\n").filter(Boolean))
            io.stderr.write(`[${stamp()}] ${stage} ${image} | ${l}\n`);
      },
    });
  } finally {
    live?.finish();
    quietLines = false;
    await orch.close();
  }
  // 3. Summary: table on stderr, references on stdout; GitHub Actions outputs and step summary.
  const rows = [["IMAGE", "PLATFORM", "DIGEST", "SIZE", "COMPILE"]];
  for (const r of results)
    for (const p of r.platforms)
      rows.push([r.name, p.platform, p.digest, humanSize(p.size), `${(p.ms / 1000).toFixed(1)}s`]);
  if (!flags.json) {
    io.stderr.write(`${table(rows)}\n`);
    say(`done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    for (const r of results) for (const ref of r.references) io.stdout.write(`${ref}\n`);
  } else {
    io.stdout.write(`${JSON.stringify({ type: "summary", images: results })}\n`);
  }
  await githubOutputs(io, results, plan.images[0]?.tags ?? []);
  return 0;
}

async function githubOutputs(
  io: CliIO,
  results: {
    name: string;
    digest: string;
    references: string[];
    platforms: { platform: string; digest: string; size: number }[];
  }[],
  tags: string[],
): Promise<void> {
  const out = io.env["GITHUB_OUTPUT"];
  if (out && results.length) {
    const refs = results.flatMap((r) => r.references).join("\n");
    await appendFile(
      out,
      `digest=${results[0]!.digest}\ntags<<POLYARCH_EOF\n${tags.join("\n")}\nPOLYARCH_EOF\nreferences<<POLYARCH_EOF\n${refs}\nPOLYARCH_EOF\n`,
    );
  }
  const summary = io.env["GITHUB_STEP_SUMMARY"];
  if (summary && results.length) {
    const md = [
      "### polyarch",
      "",
      `Tags: ${tags.map((t) => `\`${t}\``).join(", ")}`,
      "",
      "| image | platform | digest | size |",
      "| --- | --- | --- | --- |",
    ];
    for (const r of results)
      for (const p of r.platforms)
        md.push(`| ${r.name} | ${p.platform} | \`${p.digest.slice(0, 19)}…\` | ${humanSize(p.size)} |`);
    await appendFile(summary, `${md.join("\n")}\n`);
  }
}

/** "compile" → "compiling"; a Dockerfile step is shown as itself. */
function stepVerb(step: string): string {
  return step === "compile" ? "compiling" : step;
}
function stepPast(step: string): string {
  return step === "compile" ? "compiled" : `${step} done`;
}
