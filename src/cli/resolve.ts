/**
 * `polyarch resolve -f deploy.yaml --push <registry/prefix>` (issue 10 §3, ko's `ko resolve`):
 * every `polyarch://<import path>` in the files (Kubernetes or any YAML, JSON, text) is built
 * as `build` builds a Go main package — the same platforms, tags and SOURCE_DATE_EPOCH — pushed
 * to `<prefix>/<name>`, and replaced by `<prefix>/<name>@sha256:…`. The files come out on
 * stdout, as they were otherwise (comments and layout kept); nothing is printed until every
 * reference is built and pushed, so a failure leaves no half-resolved output.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../errors.js";
import { registryDestination } from "../orchestrate/index.js";
import { formatReference, parseReference, validateTag } from "../ref/index.js";
import { exec } from "../util/exec.js";
import type { CliIO } from "./_io.js";
import { cgoOptions } from "../builder/go/cgo.js";
import { parsePlatformFlag, parseJobs, parsePairs, resolveSourceDateEpoch } from "./_resolve.js";
import { makeOrchestrator } from "./_world.js";

export interface ResolveFlags {
  file?: string[];
  push?: string;
  platform?: string[];
  tag?: string[];
  insecure?: string[];
  jobs?: string;
  cgo?: boolean | string;
  cc?: string[];
  debugInfo?: boolean;
  base?: string;
  quiet?: boolean;
}

/** `polyarch://` and an import path (letters, digits, . _ - ~ / and a major-version suffix). */
const REF = /polyarch:\/\/([A-Za-z0-9._~\-/]+)/g;

export async function runResolve(flags: ResolveFlags, io: CliIO, signal?: AbortSignal): Promise<number> {
  const files = flags.file ?? [];
  if (!files.length)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "resolve needs the files to resolve",
      hint: "Give them with -f deploy.yaml (repeatable); - reads standard input.",
    });
  if (!flags.push)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "resolve needs a registry to push the images to",
      hint: "Give a prefix: --push ghcr.io/acme (each image goes to <prefix>/<name>).",
    });
  const prefix = flags.push.replace(/\/+$/, "");
  const probe = parseReference(`${prefix}/x`);
  if (probe.tag || probe.digest)
    throw new PolyarchError({
      code: "E_INPUT",
      message: `--push ${flags.push} is a prefix, so it takes no tag or digest`,
      hint: "Write --push registry/prefix; set tags with --tag.",
    });
  const { platforms: listed, all: allOfBase } = parsePlatformFlag(flags.platform, flags.base);
  const tags = [...new Set((flags.tag?.length ? flags.tag : ["latest"]).flatMap((t) => t.split(",")))].map(
    (t) => validateTag(t.trim()),
  );
  const jobs = parseJobs(flags.jobs);
  const cgo = cgoOptions({ cgo: flags.cgo, cc: flags.cc ? parsePairs(flags.cc, "cc") : undefined }, io.env, {
    cgo: "--cgo",
    cc: "--cc",
  });
  const texts: { name: string; text: string }[] = [];
  for (const f of files) {
    try {
      texts.push({
        name: f,
        text: f === "-" ? await readStdin() : await readFile(path.resolve(io.cwd, f), "utf8"),
      });
    } catch (e) {
      throw new PolyarchError({
        code: "E_INPUT",
        message: `cannot read ${f}`,
        hint: "Check the path given with -f.",
        cause: e,
      });
    }
  }
  const importPaths = [...new Set(texts.flatMap((t) => [...t.text.matchAll(REF)].map((m) => m[1]!)))];
  const epoch = await resolveSourceDateEpoch(io.env, io.cwd, exec);
  const orch = makeOrchestrator(io, { ...(flags.insecure ? { insecure: flags.insecure } : {}), jobs });
  const resolved = new Map<string, string>();
  try {
    const platforms = allOfBase ? await orch.basePlatforms(flags.base!, signal) : listed;
    for (const ip of importPaths) {
      const dir = await packageDir(ip, io);
      const { index, name, mountFrom } = await orch.build(
        {
          source: {
            kind: "go",
            dir,
            main: ".",
            ...(cgo ? { cgo } : {}),
            ...(flags.debugInfo ? { debugInfo: true } : {}),
          },
          platforms,
          sourceDateEpoch: epoch.value,
          image: { env: [], exposedPorts: [], labels: {}, annotations: {} },
          ...(flags.base ? { base: flags.base } : {}),
        },
        signal ? { signal } : {},
      );
      const repo = parseReference(`${prefix}/${name}`);
      const published = await orch.publish(
        index,
        { destinations: [registryDestination(repo)], tags, ...(mountFrom ? { mountFrom: [mountFrom] } : {}) },
        signal ? { signal } : {},
      );
      const ref = `${formatReference({ ...repo, tag: undefined, digest: undefined })}@${published.at(-1)!.digest}`;
      resolved.set(ip, ref);
      if (!flags.quiet) io.stderr.write(`polyarch://${ip} → ${ref}\n`);
    }
  } finally {
    await orch.close();
  }
  for (const t of texts) io.stdout.write(t.text.replace(REF, (_, ip: string) => resolved.get(ip)!));
  return 0;
}

/** The directory of an import path's package, as `go list` finds it from here; a main package only. */
async function packageDir(importPath: string, io: CliIO): Promise<string> {
  const r = await exec("go", ["list", "-find", "-f", "{{.Name}} {{.Dir}}", "--", importPath], {
    cwd: io.cwd,
    env: io.env,
  }).catch(() => undefined);
  const line = r?.code === 0 ? r.stdout.trim() : "";
  const [name, ...dir] = line.split(" ");
  if (!line || name !== "main")
    throw new PolyarchError({
      code: "E_NO_MAIN",
      message: line
        ? `polyarch://${importPath} is package ${name}, not a main package`
        : `polyarch://${importPath} is no Go package here: ${(r?.stderr ?? "go list failed").trim().split("\n")[0]}`,
      hint: "Reference main packages of the module (or its dependencies) you run resolve in.",
    });
  return dir.join(" ");
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
