/**
 * The process edge: parses argv, calls the library, prints, and returns an exit code.
 * 0 success, 1 failure, 2 bad usage. Nothing below cli/ reads argv or env or prints.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { PolyarchError } from "../errors.js";
import { type CliIO, printError } from "./_io.js";
import type { BuildFlags } from "./build.js";
import type { CopyFlags } from "./copy.js";
import type { InspectFlags } from "./inspect.js";
import type { LoginFlags } from "./login.js";

// Command modules load only when their command runs: start-up time is part of every rebuild.
const DEFAULT_OUTPUT = "oci:out/oci";
const DEFAULT_TAG = "latest";

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
// The cgo options of every command that builds Go (build, resolve).
const CGO_OPTION = () =>
  new Option(
    "--cgo [link]",
    "CGO_ENABLED=1 with a C cross compiler per platform (Debian's <triplet>-gcc); link static (the default on scratch) or dynamic (the default on a --base, which must carry the libc); also on when CGO_ENABLED=1 is exported",
  );
const CC_OPTION = () =>
  new Option(
    "--cc <platform=compiler>",
    "the C compiler for one platform's cgo build, e.g. linux/arm64=aarch64-linux-gnu-gcc (repeatable; also CC_linux_arm64)",
  ).argParser(collect);

const DEBUG_INFO_OPTION = () =>
  new Option(
    "--debug-info",
    "keep DWARF and the symbol table in the binaries (for delve, gdb); by default they are left out (-ldflags=-s -w, compiled without DWARF), which stack traces do not need",
  );

export async function main(argv: readonly string[], io: CliIO, signal?: AbortSignal): Promise<number> {
  let exit = 0;
  const debug = argv.includes("--debug");
  const program = new Command("polyarch")
    .description(
      "Build multi-architecture OCI images of Go services: no daemon, no QEMU, reproducible to the byte.",
    )
    .version(version(), "-V, --version")
    .option("--debug", "show stack traces on errors")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride();

  program
    .command("build")
    .summary("cross-compile a Go main package for several platforms into one multi-arch image")
    .description(
      [
        "Cross-compile the Go main package in DIR (default: .) once per platform with the host Go",
        "toolchain (CGO_ENABLED=0 unless --cgo, -trimpath, no debug info unless --debug-info), put each",
        "binary at /app/<name> on an empty (scratch) base, add DIR/kodata/ as a static-files layer at",
        "/app/data, and write one image index over all platforms. SOURCE_DATE_EPOCH (default: the last",
        "commit's time) fixes every timestamp.",
      ].join(" "),
    )
    .argument("[dir]", "directory of the main package", ".")
    .option(
      "-p, --platform <list>",
      "platforms, comma separated (repeatable), e.g. linux/amd64,linux/arm64,linux/arm/v7, or all: every platform of --base (default: linux/<host arch>)",
      collect,
    )
    .option("-t, --tag <tag>", `tag to record (repeatable; default: ${DEFAULT_TAG})`, collect)
    .option(
      "-o, --output <target>",
      `oci:<dir> (OCI image layout) or tarball:<file> (docker load / oci-archive); default ${DEFAULT_OUTPUT} unless --push is given`,
    )
    .option("--ldflags <flags>", "extra -ldflags for go build, e.g. '-X main.version=1.2.3'")
    .option("--build-tags <tags>", "go build tags, comma separated")
    .addOption(CGO_OPTION())
    .addOption(CC_OPTION())
    .addOption(DEBUG_INFO_OPTION())
    .option("--user <user>", "user the entrypoint runs as, e.g. 65532:65532")
    .option("--nonroot", "run as the unprivileged user 65532:65532")
    .option("-e, --env <KEY=VALUE>", "environment variable in the image (repeatable)", collect)
    .option("--port <port>", "exposed port, e.g. 8080 or 8080/udp (repeatable)", collect)
    .option("-l, --label <KEY=VALUE>", "image config label (repeatable)", collect)
    .option("--annotation <KEY=VALUE>", "OCI annotation on the index and each manifest (repeatable)", collect)
    .option("--workdir <dir>", "working directory of the entrypoint (default: /)")
    .option("-j, --jobs <n>", "platforms compiled at once (default: number of cores)")
    .option(
      "--base <ref>",
      "base image (registry reference or oci:<dir>[:tag]); each platform is built on the base's image for it (default: scratch)",
    )
    .option(
      "--push <ref>",
      "push to a registry, e.g. ghcr.io/acme/api:1.2.3 (the tag joins --tag); with --output as well, both get it",
    )
    .option(
      "--main <package>",
      "another main package built into the same image as /app/<name>, for every platform (repeatable); DIR's package stays the entrypoint",
      collect,
    )
    .option(
      "--media-types <types>",
      "oci (default) or docker: Docker v2.2 manifest list and schema 2 manifests, for old clients and registries",
    )
    .option(
      "--platform-tags <style>",
      "with --push, also tag each platform image: os-arch (1.2.3-linux-arm64) or arch (1.2.3-arm64)",
    )
    .option(
      "--insecure <registry>",
      "allow plain HTTP to this registry (repeatable; localhost always may)",
      collect,
    )
    .option(
      "-f, --file <Dockerfile>",
      "build a Dockerfile instead of a Go package; DIR is then the build context",
    )
    .option(
      "--build-arg <KEY=VALUE>",
      "Dockerfile build arg (repeatable); {{arch}}, {{os}}, {{variant}}, {{platform}} are filled per platform",
      collect,
    )
    .option("--target <stage>", "the Dockerfile stage to build (default: the last)")
    .option(
      "--builder <platform=endpoint>",
      "where Dockerfile stages that need a process run for a platform: a BuildKit daemon (tcp://, unix://), a Docker engine (docker, docker+ssh://host, docker+unix:///path, ?network=host) or buildah (repeatable; default buildah, else docker, native for this machine's platform, emulated for others)",
      collect,
    )
    .option(
      "--cache <registry/repository>",
      "with -f: share the build cache of delegated stages through this registry repository (cache-from and cache-to)",
    )
    .option("--dry-run", "with -f: print the plan per platform (stages, native or delegated steps) and stop")
    .option("--json", "print the result as JSON on stdout")
    .option("-q, --quiet", "no progress on stderr")
    .action(async (dir: string | undefined, flags: BuildFlags) => {
      exit = await (await import("./build.js")).runBuild(dir, flags, io, signal);
    });

  program
    .command("inspect")
    .summary("show an image index and its platforms")
    .description(
      "Show the index at REF (oci:<dir>[:tag]) with each platform's digest and size, or, with --json, the JSON `docker manifest inspect` prints.",
    )
    .argument("<ref>", "oci:<dir>[:tag] or registry/repository[:tag|@digest]")
    .option("--json", "print JSON in the shape of docker manifest inspect")
    .option(
      "-v, --verbose",
      "with --json: one entry per platform with its manifest, like docker manifest inspect --verbose",
    )
    .option("--raw", "print the stored manifest bytes unchanged")
    .addOption(new Option("--platform <platform>", "show one platform's manifest and config"))
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .action(async (ref: string, flags: InspectFlags) => {
      exit = await (await import("./inspect.js")).runInspect(ref, flags, io);
    });

  const copyOptions = (c: Command) =>
    c
      .option(
        "-p, --platform <list>",
        "copy only these platforms (one gives that image, several a new index)",
        collect,
      )
      .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
      .option("--json", "print the result as JSON")
      .option("-q, --quiet", "no progress on stderr");

  copyOptions(
    program
      .command("copy")
      .summary("copy an image or index between registries and layouts, digests unchanged")
      .description(
        "Copy SRC to DST (each oci:<dir>[:tag] or registry/repository[:tag]), all platforms unless --platform picks some. Blobs already at DST are skipped; on one registry they are mounted.",
      )
      .argument("<src>", "source")
      .argument("<dst>", "destination"),
  ).action(async (src: string, dst: string, flags: CopyFlags) => {
    exit = await (await import("./copy.js")).runCopy(src, dst, flags, io, signal);
  });

  copyOptions(
    program
      .command("push")
      .summary("push an image from an OCI layout to a registry")
      .argument("<src>", "oci:<dir>[:tag]")
      .argument("<ref>", "registry/repository[:tag]"),
  ).action(async (src: string, dst: string, flags: CopyFlags) => {
    if (!src.startsWith("oci:"))
      throw new PolyarchError({
        code: "E_INPUT",
        message: `push reads from an OCI layout, not "${src}"`,
        hint: "Write the source as oci:<dir>[:tag]; for registry to registry use polyarch copy.",
      });
    exit = await (await import("./copy.js")).runCopy(src, dst, flags, io, signal, "push");
  });

  const manifest = program.command("manifest").summary("manifest lists by hand, as docker manifest does");
  type MF = import("./manifest.js").ManifestFlags;
  manifest
    .command("create")
    .summary("create a local manifest list from pushed images (their platforms read from their configs)")
    .argument("<list>", "registry/repository:tag of the list")
    .argument("<images...>", "pushed images; an index adds all its platform images")
    .option("-a, --amend", "add to an existing local list")
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .action(async (list: string, images: string[], flags: MF) => {
      exit = await (await import("./manifest.js")).runManifestCreate(list, images, flags, io, signal);
    });
  manifest
    .command("annotate")
    .summary("set the platform of one image in a local list")
    .argument("<list>", "the list")
    .argument("<image>", "the image as given to create, or its digest")
    .option("--os <os>", "operating system")
    .option("--arch <arch>", "architecture")
    .option("--variant <variant>", "variant, e.g. v7")
    .option("--os-version <version>", "os.version (Windows)")
    .option("--os-features <list>", "os.features, comma separated")
    .action(async (list: string, image: string, flags: MF) => {
      exit = await (await import("./manifest.js")).runManifestAnnotate(list, image, flags, io);
    });
  manifest
    .command("push")
    .summary("push a local list: its images into the list's repository first, then the list")
    .argument("<list>", "the list")
    .option("--purge", "remove the local list after pushing")
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .action(async (list: string, flags: MF) => {
      exit = await (await import("./manifest.js")).runManifestPush(list, flags, io, signal);
    });
  manifest
    .command("inspect")
    .summary("print a local list in docker manifest inspect's shape")
    .argument("<list>", "the list")
    .action(async (list: string) => {
      exit = await (await import("./manifest.js")).runManifestInspect(list, io);
    });
  manifest
    .command("rm")
    .summary("remove a local list")
    .argument("<list>", "the list")
    .action(async (list: string) => {
      exit = await (await import("./manifest.js")).runManifestRm(list, io);
    });

  type CF = import("../config/index.js").ConfigFlags & { json?: boolean };
  const configOptions = (c: Command) =>
    c
      .option("--env <name>", "environment from polyarch.yaml (also POLYARCH_ENV)")
      .option("--registry <host>", "destination registry (also REGISTRY)")
      .option("--repository <path>", "destination repository prefix (also REPOSITORY)")
      .option("-p, --platform <list>", "platforms (also PLATFORMS)", collect)
      .option("-c, --config <file>", "the config file (default: polyarch.yaml)")
      .option("--json", "print JSON");
  configOptions(
    program.command("config").summary("show the resolved configuration and where each value came from"),
  ).action(async (flags: CF) => {
    exit = await (await import("./config.js")).runConfig(flags, io);
  });
  configOptions(
    program.command("tags").summary("print the tags the tag rules give for this checkout"),
  ).action(async (flags: CF) => {
    exit = await (await import("./config.js")).runTags(flags, io);
  });
  configOptions(
    program
      .command("run")
      .summary("lint, test, build every image for every platform, and publish it under its tags")
      .option("--dry-run", "print every step, image, platform, reference and tag; run nothing")
      .option("--stages <list>", "stages to run, comma separated (default: lint,test,build,publish)")
      .option("--skip <stage>", "skip a stage (repeatable)", collect)
      .option("--tag-suffix <suffix>", "append to every tag, e.g. -arm64 for one job of a split build")
      .option("-j, --jobs <n>", "platforms compiled at once (default: number of cores)")
      .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect),
  ).action(async (flags: import("./run.js").RunFlags) => {
    exit = await (await import("./run.js")).runRun(flags, io, signal);
  });

  program
    .command("info")
    .summary("check the setup: Go, git state, config, and that each destination accepts a push")
    .option("--env <name>", "environment from polyarch.yaml")
    .option("--registry <host>", "destination registry")
    .option("--repository <path>", "destination repository prefix")
    .option("-c, --config <file>", "the config file")
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .action(async (flags: import("./info.js").InfoFlags) => {
      exit = await (await import("./info.js")).runInfo(flags, io);
    });

  program
    .command("ci")
    .summary("write a CI configuration that runs the pipeline (github or gitlab)")
    .argument("<provider>", "github or gitlab")
    .option("--split", "one job per platform (native runners) pushing per-platform tags, then a merge job")
    .option(
      "-o, --output <file>",
      "where to write it (default: .github/workflows/polyarch.yml or .gitlab-ci.yml)",
    )
    .option("--stdout", "print instead of writing")
    .option("-c, --config <file>", "the config file")
    .action(async (provider: string, flags: import("./ci.js").CiFlags) => {
      exit = await (await import("./ci.js")).runCi(provider, flags, io);
    });

  program
    .command("init")
    .summary("write a commented polyarch.yaml for the Go main packages of this repository")
    .option("--force", "overwrite an existing polyarch.yaml")
    .action(async (flags: { force?: boolean }) => {
      exit = await (await import("./config.js")).runInit(flags, io);
    });

  program
    .command("resolve")
    .summary(
      "build and push every polyarch://<import path> in YAML files, and print them with digests (ko resolve)",
    )
    .description(
      "Each polyarch://<import path> in the files (Kubernetes manifests or any text) is built as `polyarch build` builds a Go main package, pushed to <prefix>/<name> with the tags, and replaced by <prefix>/<name>@sha256:…; the files are printed on stdout once every image is pushed.",
    )
    .option("-f, --file <file>", "a file to resolve (repeatable; - for standard input)", collect)
    .option("--push <prefix>", "registry/prefix the images go to, e.g. ghcr.io/acme")
    .option(
      "-p, --platform <list>",
      "platforms, comma separated (repeatable; default: linux/<host arch>)",
      collect,
    )
    .option("-t, --tag <tag>", "tags for every image (repeatable; default latest)", collect)
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .option("-j, --jobs <n>", "platforms compiled at once (default: number of cores)")
    .option(
      "--base <ref>",
      "base image of every image (registry reference or oci:<dir>[:tag]; default: scratch); -p all takes its platforms",
    )
    .addOption(CGO_OPTION())
    .addOption(CC_OPTION())
    .addOption(DEBUG_INFO_OPTION())
    .option("-q, --quiet", "no progress on stderr")
    .action(async (flags: import("./resolve.js").ResolveFlags) => {
      exit = await (await import("./resolve.js")).runResolve(flags, io, signal);
    });

  program
    .command("mirror")
    .summary("copy a list of third-party images, only those whose digest changed")
    .description(
      "Mirror every image of a list (seed 002's thirdparty.txt: one `source [destination]` per line, # comments). A line without a destination goes to --to <registry/prefix>/<repository>:<tag>. Unchanged images are `up to date`.",
    )
    .option("-f, --file <file>", "the mirror list")
    .option("--to <prefix>", "registry/prefix for lines without a destination")
    .option("--dry-run", "say what would be copied, copy nothing")
    .option("--insecure <registry>", "allow plain HTTP to this registry (repeatable)", collect)
    .option("--json", "print the results as JSON")
    .action(async (flags: import("./mirror.js").MirrorFlags) => {
      exit = await (await import("./mirror.js")).runMirror(flags, io, signal);
    });

  program
    .command("login")
    .summary("check and store credentials for a registry (docker's config.json)")
    .argument("<registry>", "registry host, e.g. ghcr.io or localhost:5000")
    .option("-u, --username <user>", "user name")
    .option("--password-stdin", "read the password or token from standard input")
    .option("-p, --password <password>", "password (visible to other users; prefer --password-stdin)")
    .option("--insecure <registry>", "allow plain HTTP to this registry", collect)
    .action(async (registry: string, flags: LoginFlags) => {
      exit = await (await import("./login.js")).runLogin(registry, flags, io);
    });

  program
    .command("logout")
    .summary("remove stored credentials for a registry")
    .argument("<registry>", "registry host")
    .action(async (registry: string) => {
      exit = await (await import("./login.js")).runLogout(registry, io);
    });

  try {
    await program.parseAsync([...argv], { from: "user" });
    return exit;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are not errors; commander has printed its message already.
      if (
        e.code === "commander.helpDisplayed" ||
        e.code === "commander.version" ||
        e.code === "commander.help"
      )
        return 0;
      return e.exitCode === 0 ? 0 : 2;
    }
    printError(io, e, debug);
    return e instanceof PolyarchError && e.code === "E_ABORTED" ? 130 : 1;
  }
}
