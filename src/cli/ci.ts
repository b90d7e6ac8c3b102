import { mkdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../errors.js";
import { githubWorkflow, gitlabCi } from "../pipeline/ci.js";
import type { CliIO } from "./_io.js";
import { loadResolved, withBasePlatforms } from "./config.js";

export interface CiFlags {
  split?: boolean;
  output?: string;
  stdout?: boolean;
  config?: string;
}

export async function runCi(provider: string, flags: CiFlags, io: CliIO): Promise<number> {
  if (provider !== "github" && provider !== "gitlab") {
    throw new PolyarchError({
      code: "E_INPUT",
      message: `unknown CI provider "${provider}"`,
      hint: "Use polyarch ci github or polyarch ci gitlab.",
    });
  }
  const c = await withBasePlatforms(await loadResolved(io, flags.config ? { config: flags.config } : {}), io);
  const text = `# Written by polyarch ci ${provider}${flags.split ? " --split" : ""}; edit freely.\n${provider === "github" ? githubWorkflow(c, !!flags.split) : gitlabCi(c, !!flags.split)}`;
  if (flags.stdout) {
    io.stdout.write(text);
    return 0;
  }
  const file = path.resolve(
    io.cwd,
    flags.output ?? (provider === "github" ? ".github/workflows/polyarch.yml" : ".gitlab-ci.yml"),
  );
  if (await stat(file).catch(() => undefined)) {
    throw new PolyarchError({
      code: "E_OUTPUT",
      message: `${path.relative(io.cwd, file)} already exists`,
      hint: "Use --stdout to see the new one, or --output to write it elsewhere.",
    });
  }
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  io.stderr.write(`wrote ${path.relative(io.cwd, file)}\n`);
  return 0;
}
