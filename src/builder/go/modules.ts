/**
 * Module dependencies (issue 10 §1), downloaded once per build before any compile, so every
 * platform's `go build` (and the lint and test stages after) finds them in the module cache,
 * and a module that cannot be had is one sentence naming it and the proxy — not six compilers
 * failing at once. The go command does the work, with the user's GOPROXY, GOFLAGS, GONOSUMDB,
 * GOPRIVATE, .netrc and git config; polyarch only reads its answer. A vendor/ directory (used
 * unless GOFLAGS says -mod=mod) and a module without go.sum need no download. A download that
 * succeeded is remembered by the hash of go.mod, go.sum (and go.work) and the settings, so an
 * unchanged module costs no process on the next build.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { PolyarchError } from "../../errors.js";
import type { Exec } from "../../util/exec.js";

const SETTINGS = [
  "GOPROXY",
  "GOFLAGS",
  "GONOSUMDB",
  "GONOSUMCHECK",
  "GOPRIVATE",
  "GONOPROXY",
  "GOSUMDB",
  "GOWORK",
];

/** The nearest file of this name in `dir` or above it, or undefined. */
export async function findUp(dir: string, name: string): Promise<string | undefined> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const f = path.join(d, name);
    if (await stat(f).catch(() => undefined)) return f;
    if (path.dirname(d) === d) return undefined;
  }
}

/** A URL's user info hidden (a GOPROXY may carry a token). */
export function redactUrls(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, "$1***@");
}

export async function downloadModules(opts: {
  dir: string;
  goBinary: string;
  env: Record<string, string | undefined>;
  exec: Exec;
  cacheDir: string;
  signal?: AbortSignal;
}): Promise<void> {
  const gomod = await findUp(opts.dir, "go.mod");
  if (!gomod) return; // GOPATH mode or no module: the compile says what is wrong
  const root = path.dirname(gomod);
  const gosum = await readFile(path.join(root, "go.sum"), "utf8").catch(() => "");
  const gowork = opts.env["GOWORK"] === "off" ? undefined : await findUp(opts.dir, "go.work");
  const worksum = gowork ? await readFile(`${gowork}.sum`, "utf8").catch(() => "") : "";
  const flags = opts.env["GOFLAGS"] ?? "";
  const vendored =
    !gowork &&
    !/-mod=(mod|readonly)/.test(flags) &&
    (await stat(path.join(root, "vendor", "modules.txt")).catch(() => undefined));
  if (vendored || (!gosum.trim() && !worksum.trim())) return;
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        gomod: await readFile(gomod, "utf8"),
        gosum,
        gowork: gowork ? await readFile(gowork, "utf8") : "",
        worksum,
        settings: SETTINGS.map((k) => opts.env[k] ?? ""),
      }),
    )
    .digest("hex");
  const marker = path.join(opts.cacheDir, "modules", key);
  if (await stat(marker).catch(() => undefined)) return;
  const r = await opts.exec(opts.goBinary, ["mod", "download", "-json"], {
    cwd: opts.dir,
    env: opts.env,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (r.code !== 0) {
    // One JSON object per module; the first with an Error names what could not be had.
    const failed =
      r.stdout
        .split(/\n(?=\{)/)
        .map((s) => {
          try {
            return JSON.parse(s) as { Path?: string; Version?: string; Error?: string };
          } catch {
            return undefined;
          }
        })
        .find((m) => m?.Error) ??
      // Or the go command's own line: "go: <module>@<version>: <why>", "verifying <module>@<version>: …".
      (() => {
        const m = /^(?:go: )?(?:verifying )?([^\s@:]+)@([^\s:]+): (.+)$/m.exec(r.stderr);
        return m ? { Path: m[1]!, Version: m[2]!, Error: m[3]! } : undefined;
      })();
    const proxy = redactUrls(opts.env["GOPROXY"] ?? (await goEnv(opts, "GOPROXY")) ?? "the Go module proxy");
    const why = redactUrls(
      (failed?.Error ?? r.stderr.trim().split("\n").find(Boolean) ?? "go mod download failed").trim(),
    );
    throw new PolyarchError({
      code: "E_MODULE",
      message: failed?.Path
        ? `cannot download the Go module ${failed.Path}${failed.Version ? `@${failed.Version}` : ""} (GOPROXY=${proxy}): ${why}`
        : `cannot download the Go modules of ${root} (GOPROXY=${proxy}): ${why}`,
      hint: /checksum mismatch|SECURITY ERROR/i.test(why)
        ? "go.sum does not match what the proxy serves: check the module's origin, then run go mod tidy if the change is expected."
        : "Check the module path and version in go.mod, GOPROXY and, for private modules, GOPRIVATE and your .netrc or git credentials.",
      data: { stderr: redactUrls(r.stderr) },
    });
  }
  await mkdir(path.dirname(marker), { recursive: true });
  await writeFile(marker, `${new Date().toISOString()}\n`);
}

async function goEnv(
  opts: { goBinary: string; env: Record<string, string | undefined>; exec: Exec; dir: string },
  name: string,
): Promise<string | undefined> {
  const r = await opts
    .exec(opts.goBinary, ["env", name], { cwd: opts.dir, env: opts.env })
    .catch(() => undefined);
  return r?.code === 0 ? r.stdout.trim() || undefined : undefined;
}
