/** Helpers for tests that use real tools: skopeo, umoci, chroot + qemu-user, free ports. */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Platform } from "../platform/index.js";
import { type ExecResult, exec } from "../util/exec.js";

export async function run(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; input?: string } = {},
): Promise<ExecResult> {
  const r = await exec(file, args, {
    env: opts.env ?? process.env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
  return r;
}

export async function mustRun(
  file: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * A throwaway P-256 key and self-signed certificate (one day) from openssl, as `<name>-key.pem`
 * and `<name>-cert.pem` in `dir`; `ip` adds it as a subjectAltName (Go wants one to trust it).
 */
export async function selfSignedCert(
  dir: string,
  name: string,
  ip?: string,
): Promise<{ keyFile: string; certFile: string }> {
  const keyFile = path.join(dir, `${name}-key.pem`);
  const certFile = path.join(dir, `${name}-cert.pem`);
  await mustRun("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "1",
    "-subj",
    `/CN=polyarch-test-${name}`,
    ...(ip ? ["-addext", `subjectAltName=IP:${ip}`] : []),
  ]);
  return { keyFile, certFile };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** The qemu-user binary that runs a platform's code here, or undefined when it runs natively. */
export function qemuFor(p: Platform): string | undefined {
  const host = process.arch;
  if ((p.architecture === "amd64" || p.architecture === "386") && host === "x64") return undefined;
  if (p.architecture === "arm64" && host === "arm64") return undefined;
  const names: Record<string, string> = {
    arm64: "aarch64",
    arm: "arm",
    ppc64le: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
    amd64: "x86_64",
    "386": "i386",
  };
  const n = names[p.architecture];
  return n ? `/usr/bin/qemu-${n}-static` : undefined;
}

/**
 * Unpacks one platform of an OCI layout with skopeo (platform selection) and umoci (unpack),
 * returning the bundle's rootfs and the process umoci derived from the image config.
 */
export async function unpackPlatform(
  layoutRef: string,
  p: Platform,
  work: string,
): Promise<{ rootfs: string; args: string[]; env: string[]; cwd: string }> {
  const single = path.join(work, "single");
  const bundle = path.join(work, "bundle");
  const overrides = [
    "--override-os",
    p.os,
    "--override-arch",
    p.architecture,
    ...(p.variant ? ["--override-variant", p.variant] : []),
  ];
  await mustRun("skopeo", ["copy", "--quiet", ...overrides, layoutRef, `oci:${single}:one`]);
  await mustRun("umoci", ["unpack", "--rootless", "--image", `${single}:one`, bundle]);
  const cfg = JSON.parse(await readFile(path.join(bundle, "config.json"), "utf8")) as {
    process: { args: string[]; env: string[]; cwd: string };
  };
  return {
    rootfs: path.join(bundle, "rootfs"),
    args: cfg.process.args,
    env: cfg.process.env,
    cwd: cfg.process.cwd,
  };
}

/** Starts an unpacked entrypoint with chroot, through qemu-user when the CPU differs. */
export async function startInChroot(
  rootfs: string,
  p: Platform,
  args: string[],
  env: string[],
): Promise<{ child: ChildProcess; output: () => string }> {
  const qemu = qemuFor(p);
  let argv = args;
  if (qemu) {
    // The emulator is copied into the rootfs (not registered with binfmt_misc), so nothing on the host changes.
    await copyFile(qemu, path.join(rootfs, ".qemu"));
    argv = ["/.qemu", ...args];
  }
  const child = spawn("/usr/sbin/chroot", [rootfs, ...argv], {
    env: Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)])),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  return { child, output: () => out };
}

/** Runs an unpacked program to its end under chroot (qemu-user when needed): its exit code and output. */
export async function runInChroot(
  rootfs: string,
  p: Platform,
  args: string[],
  env: string[] = [],
): Promise<{ code: number | null; output: string }> {
  const { child, output } = await startInChroot(rootfs, p, args, env);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  return { code, output: output() };
}

export async function httpGet(url: string): Promise<{ status: number; body: string; headers: Headers }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text(), headers: r.headers };
}

/** Polls until fn succeeds or the time is up. */
export async function eventually<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw last;
}

/**
 * Unpacks one platform of an image (skopeo + umoci), starts its entrypoint under chroot
 * (qemu-user when needed) with `extraArgs`/`extraEnv`, lets `probe` talk to it, then stops it
 * with SIGTERM and returns its output.
 */
export async function runUnpacked(
  layoutRef: string,
  p: Platform,
  work: string,
  opts: { extraArgs?: (port: number) => string[]; extraEnv?: (port: number) => string[] },
  probe: (base: string, ctx: { rootfs: string; args: string[]; output: () => string }) => Promise<void>,
): Promise<string> {
  const { rootfs, args, env } = await unpackPlatform(layoutRef, p, work);
  const port = await freePort();
  const { child, output } = await startInChroot(
    rootfs,
    p,
    [...args, ...(opts.extraArgs?.(port) ?? [])],
    [...env, ...(opts.extraEnv?.(port) ?? [])],
  );
  const exited = new Promise((r) => child.once("exit", r));
  try {
    await probe(`http://127.0.0.1:${port}`, { rootfs, args, output });
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
  return output();
}
