/**
 * Dockerfile builds end to end (issue 9 §3): native steps checked against a real builder
 * (buildah, chroot isolation, private storage) running the same Dockerfile — the same file
 * tree (paths, types, modes, owners, link targets, contents) and the same config, both read
 * back by the same independent readers (skopeo, umoci) — and the seeds' shapes built for
 * amd64 and arm64, run per architecture, reproducible twice and from a second copy.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parsePlatform } from "../src/platform/index.js";
import { eventually, httpGet, mustRun, runUnpacked } from "../src/testing/tools.js";
import {
  ARM_BUSYBOX,
  cleanup,
  dockerfileBuild,
  gitRepo,
  helloPerArch,
  minbaseLayout,
  polyarch,
  tempDir,
} from "./_fixture.js";

let work: string;
let busybox: string; // an amd64 base with busybox and /etc/passwd, made by buildah
let pwbase: string; // a linux/amd64 + linux/arm64 base: /etc/passwd, /etc/group and busybox
let benv: Record<string, string | undefined>;
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];
const env = () => ({ POLYARCH_CACHE_DIR: path.join(work, "cache"), SOURCE_DATE_EPOCH: "1700000000" });

/** Paths a buildah RUN leaves behind as mount points; BuildKit and polyarch leave none. */
const BUILDAH_RUN_ARTEFACTS = new Set([
  "dev",
  "proc",
  "sys",
  "run",
  "etc/hostname",
  "etc/hosts",
  "etc/resolv.conf",
]);

async function buildah(args: string[]): Promise<string> {
  return mustRun("buildah", args, { env: benv });
}

/** buildah bud (chroot isolation) of a Dockerfile into an OCI layout tag, or a manifest list. */
async function bud(
  dockerfile: string,
  context: string,
  o: { out?: string; manifest?: string; epoch?: string; platform?: string; extra?: string[] },
): Promise<string> {
  return buildah([
    "bud",
    "--isolation",
    "chroot",
    "--timestamp",
    o.epoch ?? "0",
    ...(o.platform ? ["--platform", o.platform] : []),
    ...(o.manifest ? ["--manifest", o.manifest] : []),
    "-f",
    dockerfile,
    ...(o.extra ?? []),
    ...(o.out ? ["-t", `oci:${o.out}:latest`] : []),
    context,
  ]);
}

/** Asserts that one platform of two layouts has the same file tree and config. */
async function sameTreeAndConfig(ours: string, theirs: string, arch: string, what: string) {
  const [a, b] = [await flatten(ours, arch), await flatten(theirs, arch)];
  assert.deepEqual(a.tree, b.tree, `${what}: buildah's tree`);
  assert.deepEqual(a.config, b.config, `${what}: buildah's config`);
}

/** One platform of a layout unpacked by skopeo and umoci (as root: owners kept) into dir/bundle. */
async function unpack(layout: string, arch: string, dir: string): Promise<string> {
  await mustRun("skopeo", [
    "copy",
    "-q",
    "--override-arch",
    arch,
    `oci:${layout}:latest`,
    `oci:${dir}/one:x`,
  ]);
  await mustRun("umoci", ["unpack", "--image", `${dir}/one:x`, `${dir}/bundle`]);
  return `${dir}/bundle/rootfs`;
}

/** The image's file tree and config for one platform, read by skopeo and umoci. */
async function flatten(
  layout: string,
  arch: string,
): Promise<{ tree: string[]; config: unknown; caps: string }> {
  const dir = await tempDir("flat");
  try {
    await unpack(layout, arch, dir);
    const listing = await mustRun("sh", [
      "-c",
      `cd ${dir}/bundle/rootfs && find . -mindepth 1 -printf '%P %y %m %U %G %l\\n' | sort | while read -r p y m u g l; do h=; [ "$y" = f ] && h=$(sha256sum "$p" | cut -c1-16); echo "$p $y $m $u $g $l $h"; done`,
    ]);
    const cfg = JSON.parse(await mustRun("skopeo", ["inspect", "--config", `oci:${dir}/one:x`])) as {
      config: { Labels?: Record<string, string> };
      architecture: string;
    };
    // File capabilities (the security.capability xattr), as getcap reads them from the unpacked tree.
    const caps = await mustRun("sh", ["-c", `cd ${dir}/bundle/rootfs && getcap -r . 2>/dev/null | sort`]);
    delete cfg.config.Labels?.["io.buildah.version"];
    if (cfg.config.Labels && Object.keys(cfg.config.Labels).length === 0) delete cfg.config.Labels;
    return {
      tree: listing.split("\n").filter((l) => l && !BUILDAH_RUN_ARTEFACTS.has(l.split(" ")[0]!)),
      config: { ...cfg.config, architecture: cfg.architecture },
      caps,
    };
  } finally {
    await cleanup(dir);
  }
}

/** polyarch build of a context's Dockerfile, with the test's cache and time. */
function dfBuild(ctx: string, args: string[]) {
  return polyarch(["build", "-f", path.join(ctx, "Dockerfile"), ctx, ...args], { env: env() });
}

async function both(
  dockerfile: string,
  context: string,
  name: string,
  platforms: string[],
  extra: string[] = [],
) {
  const bh = path.join(work, `${name}-buildah`);
  const pa = path.join(work, `${name}-polyarch`);
  for (const p of platforms)
    await bud(dockerfile, context, {
      out: `${bh}-${p.replaceAll("/", "-")}`,
      epoch: "1700000000",
      platform: p,
      extra,
    });
  const r = await polyarch(
    ["build", "-f", dockerfile, context, "-p", platforms.join(","), "-o", `oci:${pa}`, ...extra],
    {
      env: env(),
    },
  );
  assert.equal(r.code, 0, r.stderr);
  for (const p of platforms) {
    const arch = parsePlatform(p).architecture;
    const theirs = await flatten(`${bh}-${p.replaceAll("/", "-")}`, arch);
    const ours = await flatten(pa, arch);
    assert.deepEqual(ours.tree, theirs.tree, `${name} ${p}: the same file tree as buildah`);
    assert.deepEqual(ours.config, theirs.config, `${name} ${p}: the same config as buildah`);
    assert.equal(ours.caps, theirs.caps, `${name} ${p}: the same file capabilities as buildah`);
  }
  return { layout: pa, digest: digestOf(r.stdout)!, stderr: r.stderr };
}

before(async () => {
  // buildah names an oci: base after its path, which must be lowercase: no mkdtemp letters.
  work = path.join(os.tmpdir(), `polyarch-dfe2e-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(work, { recursive: true });
  await writeFile(
    path.join(work, "storage.conf"),
    `[storage]\ndriver = "vfs"\nrunroot = "${work}/bh-run"\ngraphroot = "${work}/bh-graph"\n`,
  );
  await writeFile(path.join(work, "registries.conf"), "unqualified-search-registries = []\n");
  benv = {
    ...process.env,
    CONTAINERS_STORAGE_CONF: path.join(work, "storage.conf"),
    CONTAINERS_REGISTRIES_CONF: path.join(work, "registries.conf"),
  };
  // The bases, made offline by the real builder from Debian's busybox-static.
  const root = path.join(work, "base", "rootfs");
  await mkdir(path.join(root, "bin"), { recursive: true });
  await mkdir(path.join(root, "etc"), { recursive: true });
  await mkdir(path.join(root, "tmp"), { recursive: true });
  await chmod(path.join(root, "tmp"), 0o1777);
  await copyFile("/bin/busybox", path.join(root, "bin", "busybox"));
  for (const c of ["sh", "mkdir", "chown", "chmod", "ln", "touch", "rm"])
    await symlink("busybox", path.join(root, "bin", c));
  const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
  const group = "root:x:0:\napp:x:1001:\nstaff:x:50:\n";
  await writeFile(path.join(root, "etc", "passwd"), passwd);
  await writeFile(path.join(root, "etc", "group"), group);
  await writeFile(path.join(root, "etc", "motd"), "welcome\n");
  await writeFile(path.join(work, "base", "Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n");
  busybox = path.join(work, "busybox");
  await bud(path.join(work, "base", "Dockerfile"), path.join(work, "base"), { out: busybox });
  const pw = path.join(work, "pw");
  await mkdir(path.join(pw, "etc"), { recursive: true });
  await writeFile(path.join(pw, "etc", "passwd"), passwd);
  await writeFile(path.join(pw, "etc", "group"), group);
  // And each architecture's busybox as /bin/sh and the commands native RUNs use (a real shell
  // would need them too).
  for (const [arch, bb] of [
    ["amd64", "/bin/busybox"],
    ["arm64", ARM_BUSYBOX],
  ] as const) {
    await mkdir(path.join(pw, `bb-${arch}`), { recursive: true });
    await copyFile(bb, path.join(pw, `bb-${arch}`, "busybox"));
    await chmod(path.join(pw, `bb-${arch}`, "busybox"), 0o755);
    for (const c of ["sh", "mkdir", "chown", "chmod", "ln", "touch", "rm"])
      await symlink("busybox", path.join(pw, `bb-${arch}`, c));
  }
  await writeFile(
    path.join(pw, "Dockerfile"),
    "FROM scratch\nARG TARGETARCH\nCOPY etc/ /etc/\nCOPY bb-${TARGETARCH}/ /bin/\n",
  );
  await bud(path.join(pw, "Dockerfile"), pw, { platform: "linux/amd64,linux/arm64", manifest: "pwbase" });
  pwbase = path.join(work, "pwbase");
  await buildah(["manifest", "push", "--all", "pwbase", `oci:${pwbase}:latest`]);
});
after(() => cleanup(work));

describe("Dockerfile builds, natively, against buildah", () => {
  it("native RUN forms, COPY ownership and modes, stages, .dockerignore: the same tree and config", async () => {
    const ctx = path.join(work, "rich");
    await mkdir(path.join(ctx, "sub", "deep"), { recursive: true });
    await writeFile(path.join(ctx, "hello.txt"), "hello\n");
    await writeFile(path.join(ctx, "other.txt"), "other\n");
    await writeFile(path.join(ctx, "run.sh"), "#!/bin/sh\necho run\n");
    await chmod(path.join(ctx, "run.sh"), 0o700);
    await writeFile(path.join(ctx, "sub", "deep", "file"), "deep\n");
    await writeFile(path.join(ctx, "secret.txt"), "never copied\n");
    await writeFile(path.join(ctx, ".dockerignore"), "secret.txt\n");
    // Archives ADD unpacks: gzip and plain tar, with owners and modes of their own.
    const pkg = path.join(work, "rich-pkg");
    await mkdir(path.join(pkg, "bin"), { recursive: true });
    await writeFile(path.join(pkg, "bin", "tool"), "#!/bin/sh\necho tool\n");
    await chmod(path.join(pkg, "bin", "tool"), 0o750);
    await writeFile(path.join(pkg, "README"), "read me\n");
    await mustRun("tar", [
      "-C",
      pkg,
      "--owner=1000",
      "--group=50",
      "--numeric-owner",
      "-czf",
      path.join(ctx, "bundle.tar.gz"),
      ".",
    ]);
    await mustRun("tar", [
      "-C",
      pkg,
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-cf",
      path.join(ctx, "plain.tar"),
      "bin",
    ]);
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        `FROM oci:${busybox}:latest AS files`,
        "COPY sub/ /stash/sub/",
        "RUN mkdir -p /stash/more && touch /stash/more/keep",
        `FROM oci:${busybox}:latest`,
        "ARG VERSION=1.0",
        "ENV APP_HOME=/app VERSION=$VERSION",
        "RUN mkdir -p /app/data && chown -R app:app /app && chmod 0750 /app/data",
        "COPY --chown=app:staff hello.txt $APP_HOME/",
        "COPY --chmod=0755 run.sh /usr/local/bin/run",
        "COPY --from=files /stash /app/stash",
        "COPY *.txt /copied/",
        "ADD bundle.tar.gz /opt/bundle/",
        "ADD plain.tar /opt/plain",
        "RUN ln -s /usr/local/bin/run /bin/run && rm /etc/motd && touch /app/.ready",
        "WORKDIR /app/work",
        'LABEL org.example.v="${VERSION}" team=core',
        "EXPOSE 8080 53/udp",
        "USER app",
        'ENTRYPOINT ["/usr/local/bin/run"]',
        'CMD ["--serve"]',
      ].join("\n"),
    );
    const r = await both(path.join(ctx, "Dockerfile"), ctx, "rich", ["linux/amd64"]);
    const flat = await flatten(r.layout, "amd64");
    assert.ok(flat.tree.some((l) => l.startsWith("copied/hello.txt f 644 0 0")));
    assert.ok(!flat.tree.some((l) => l.startsWith("copied/secret.txt")), ".dockerignore holds");
    assert.ok(!flat.tree.some((l) => l.startsWith("etc/motd")), "rm whites the base file out");
    assert.ok(
      flat.tree.some((l) => l.startsWith("app/hello.txt f 644 1000 50")),
      "--chown by name",
    );
  });

  it("RUN as a non-root USER, setcap, and chown dropping set-user-ID and capabilities: buildah's tree and xattrs", async () => {
    // A base with busybox, Debian's setcap (and what it links), and a user in a second group.
    const ctx = path.join(work, "caps");
    const root = path.join(ctx, "rootfs");
    for (const d of ["bin", "etc", "tmp", "usr/sbin", "usr/local/bin", "lib/x86_64-linux-gnu", "lib64"])
      await mkdir(path.join(root, d), { recursive: true });
    await chmod(path.join(root, "tmp"), 0o1777);
    await copyFile("/bin/busybox", path.join(root, "bin", "busybox"));
    for (const c of ["sh", "mkdir", "chown", "chmod", "ln", "touch", "rm"])
      await symlink("busybox", path.join(root, "bin", c));
    await copyFile("/usr/sbin/setcap", path.join(root, "usr", "sbin", "setcap"));
    for (const lib of ["libcap.so.2", "libc.so.6"])
      await copyFile(`/lib/x86_64-linux-gnu/${lib}`, path.join(root, "lib", "x86_64-linux-gnu", lib));
    await copyFile("/lib64/ld-linux-x86-64.so.2", path.join(root, "lib64", "ld-linux-x86-64.so.2"));
    await writeFile(
      path.join(root, "etc", "passwd"),
      "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
    );
    await writeFile(path.join(root, "etc", "group"), "root:x:0:\napp:x:1001:\nstaff:x:50:app\n");
    await writeFile(path.join(ctx, "Dockerfile.base"), "FROM scratch\nCOPY rootfs/ /\n");
    const capbase = path.join(work, "capbase");
    await bud(path.join(ctx, "Dockerfile.base"), ctx, { out: capbase });
    await writeFile(path.join(ctx, "tool"), "#!/bin/sh\necho tool\n");
    await writeFile(path.join(ctx, ".dockerignore"), "rootfs\n");
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        `FROM oci:${capbase}:latest`,
        "COPY --chmod=0755 tool /usr/local/bin/bind",
        "COPY --chmod=4755 tool /usr/local/bin/suid",
        "COPY --chmod=0755 tool /usr/local/bin/raw",
        "RUN setcap cap_net_bind_service=+ep /usr/local/bin/bind && setcap cap_net_raw,cap_setuid+p /usr/local/bin/raw",
        "RUN mkdir -p /home/app /shared && chown app:app /home/app && chown root:staff /shared && chmod 2775 /shared",
        "RUN chown app /usr/local/bin/suid /usr/local/bin/raw",
        "USER app",
        "RUN mkdir -p /home/app/data/deep && touch /home/app/data/f && ln -s f /home/app/data/l && mkdir /shared/team && touch /shared/team/x",
        "USER app:staff",
        "RUN mkdir -m 0700 /home/app/g && rm -r /home/app/data/deep",
        // A stage's file capabilities travel with COPY --from.
        `FROM oci:${capbase}:latest`,
        "COPY --from=0 /usr/local/bin/bind /usr/local/bin/raw /opt/",
        "COPY --from=0 /home/app /home/app",
      ].join("\n"),
    );
    const r = await both(path.join(ctx, "Dockerfile"), ctx, "caps", ["linux/amd64"]);
    assert.doesNotMatch(r.stderr, /on buildah/, "every step ran natively");
    const flat = await flatten(r.layout, "amd64");
    assert.match(flat.caps, /opt\/bind cap_net_bind_service=ep/);
    assert.doesNotMatch(flat.caps, /raw/, "chown dropped raw's capabilities");
    assert.ok(
      flat.tree.some((l) => l.startsWith("home/app/g d 700 1000 50")),
      "USER app:staff",
    );
    // The first stage, as the target: set-user-ID dropped by chown, a set-group-ID directory.
    const first = await both(path.join(ctx, "Dockerfile"), ctx, "caps0", ["linux/amd64"], ["--target", "0"]);
    const flat0 = await flatten(first.layout, "amd64");
    assert.ok(
      flat0.tree.some((l) => l.startsWith("usr/local/bin/suid f 755 1000 0")),
      "chown dropped set-user-ID",
    );
    assert.ok(
      flat0.tree.some((l) => l.startsWith("shared/team d 2755 1000 50")),
      "a set-group-ID directory's group and bit",
    );
  });

  it("seed 001 (FROM scratch + COPY) for amd64, arm64 and arm/v7: buildah's tree, twice the same digest, and from a second copy", async () => {
    const ctx = path.join(work, "seed001");
    await mkdir(path.join(ctx, "static"), { recursive: true });
    await writeFile(path.join(ctx, "static", "index.html"), "<h1>hi</h1>\n");
    await writeFile(path.join(ctx, "app"), "#!/bin/sh\necho app\n");
    await chmod(path.join(ctx, "app"), 0o755);
    await writeFile(
      path.join(ctx, "Dockerfile"),
      'FROM scratch\nCOPY static/ /srv/static/\nCOPY app /srv/app\nCMD ["/srv/app"]\n',
    );
    const first = await both(path.join(ctx, "Dockerfile"), ctx, "seed001", [
      "linux/amd64",
      "linux/arm64",
      "linux/arm/v7",
    ]);
    const again = await dfBuild(ctx, [
      "-p",
      "linux/amd64,linux/arm64,linux/arm/v7",
      "-o",
      `oci:${path.join(work, "seed001-again")}`,
    ]);
    assert.equal(digestOf(again.stdout), first.digest, "built twice: the same digest");
    const copy = path.join(work, "elsewhere", "seed001");
    await cp(ctx, copy, { recursive: true });
    const moved = await polyarch(
      [
        "build",
        "-f",
        path.join(copy, "Dockerfile"),
        copy,
        "-p",
        "linux/amd64,linux/arm64,linux/arm/v7",
        "-o",
        `oci:${path.join(work, "seed001-moved")}`,
      ],
      {
        env: { ...env(), POLYARCH_CACHE_DIR: path.join(work, "cache-cold") },
      },
    );
    assert.equal(digestOf(moved.stdout), first.digest, "a second copy, cold cache: the same digest");
  });

  it("seed 004's final stage (RUN mkdir, ADD, WORKDIR, ENTRYPOINT) on a two-platform base runs on each", async () => {
    const ctx = await helloPerArch(path.join(work, "s004src"), path.join(work, "seed004"));
    await writeFile(
      path.join(ctx, "Dockerfile"),
      `FROM oci:${pwbase}:latest\nARG TARGETARCH\nRUN mkdir /app\nADD hello-\${TARGETARCH} /app/hello\nWORKDIR /app\nUSER app\nEXPOSE 8080\nENTRYPOINT ["/app/hello"]\n`,
    );
    const dry = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.doesNotMatch(dry.stdout, /delegated/, "no step needs a builder");
    const out = path.join(work, "seed004-out");
    const r = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    for (const p of ["linux/amd64", "linux/arm64"]) {
      const dir = await tempDir("run004");
      try {
        await runUnpacked(
          `oci:${out}:latest`,
          parsePlatform(p),
          dir,
          { extraEnv: (port) => [`PORT=${port}`] },
          async (base) => {
            const res = await eventually(() => httpGet(`${base}/hello`), 20_000);
            assert.equal(res.body, "hello\n", `${p} answers`);
          },
        );
      } finally {
        await cleanup(dir);
      }
    }
  });

  it("seed 004's multi-stage build: the build stage installs a package and compiles a tool on buildah (arm64 emulated), the final stage is native, buildah's tree (amd64), both run", async () => {
    // A Debian minbase per architecture (made once per machine by .ci/setup) as one base.
    const minbase = path.join(work, "minbase");
    await minbaseLayout(minbase, env());

    // The context: hello per architecture (ADD bin/hello), a package to install, a C tool.
    const ctx = path.join(work, "seed004ms");
    await helloPerArch(path.join(work, "s004mssrc"), path.join(ctx, "bin"));
    const pkg = path.join(work, "motd-pkg");
    await mkdir(path.join(pkg, "DEBIAN"), { recursive: true });
    await mkdir(path.join(pkg, "etc"), { recursive: true });
    await writeFile(
      path.join(pkg, "DEBIAN", "control"),
      "Package: polyarch-motd\nVersion: 1.0\nArchitecture: all\nMaintainer: polyarch tests <tests@localhost>\nDescription: a file the build stage installs\n",
    );
    await writeFile(path.join(pkg, "etc", "polyarch-motd"), "installed by apt\n");
    await mkdir(path.join(ctx, "debs"), { recursive: true });
    await mustRun("dpkg-deb", [
      "--root-owner-group",
      "--build",
      pkg,
      path.join(ctx, "debs", "polyarch-motd_1.0_all.deb"),
    ]);
    await writeFile(
      path.join(ctx, "soda.c"),
      '#include <stdio.h>\n#include <sys/utsname.h>\nint main(void) { struct utsname u; uname(&u); FILE *f = fopen("/etc/polyarch-motd", "r"); char line[64] = ""; if (f) fgets(line, sizeof line, f); printf("soda on %s, %s", u.machine, line); return 0; }\n',
    );
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        // Seed 004's prelim stage in two steps (each step is a commit for buildah --layers).
        `FROM oci:${minbase}:latest AS prelim`,
        "COPY debs/ soda.c /src/",
        "RUN apt-get install -y --no-install-recommends /src/polyarch-motd_1.0_all.deb && mkdir -p /go/bin && tcc -o /go/bin/soda /src/soda.c",
        `FROM oci:${minbase}:latest`,
        "ARG TARGETARCH",
        "RUN mkdir /app",
        "ADD bin/hello-${TARGETARCH} /app/hello",
        "COPY --from=prelim /go/bin/soda bin/",
        "COPY --from=prelim /etc/polyarch-motd /etc/",
        'ENTRYPOINT ["/app/hello"]',
      ].join("\n"),
    );
    const dry = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    const out = path.join(work, "seed004ms-out");
    const built = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`]);
    assert.equal(built.code, 0, built.stderr);
    const r = { layout: out, stderr: built.stderr };
    // Differential for amd64 (buildah alone; arm64 is the same Dockerfile under emulation).
    const theirs = path.join(work, "seed004ms-buildah");
    await bud(path.join(ctx, "Dockerfile"), ctx, {
      out: theirs,
      epoch: "1700000000",
      platform: "linux/amd64",
    });
    await sameTreeAndConfig(out, theirs, "amd64", "seed 004 multi-stage amd64");
    // The build stage went to buildah (arm64 under announced emulation); the final stage did not.
    assert.match(r.stderr, /stage prelim runs under emulation for linux\/arm64 on buildah/);
    assert.match(r.stderr, /steps ran natively, \d+ on buildah/);
    for (const [arch, cpu] of [
      ["amd64", "x86_64"],
      ["arm64", "aarch64"],
    ] as const) {
      const dir = await tempDir("s004ms");
      try {
        const rootfs = await unpack(r.layout, arch, dir);
        // /bin is merged into /usr/bin on Debian: COPY into bin/ followed the link.
        assert.equal(
          await mustRun("chroot", [rootfs, "/usr/bin/soda"]),
          `soda on ${cpu}, installed by apt\n`,
        );
      } finally {
        await cleanup(dir);
      }
      const run = await tempDir("s004run");
      try {
        await runUnpacked(
          `oci:${r.layout}:latest`,
          parsePlatform(`linux/${arch}`),
          run,
          { extraEnv: (port) => [`PORT=${port}`] },
          async (base) => {
            const res = await eventually(() => httpGet(`${base}/hello`), 20_000);
            assert.equal(res.body, "hello\n", `${arch} answers`);
          },
        );
      } finally {
        await cleanup(run);
      }
    }
  });

  it("the Go pattern: a build stage on $BUILDPLATFORM goes to buildah natively, the final stage stays native", async () => {
    const ctx = path.join(work, "gopattern");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        `FROM --platform=$BUILDPLATFORM oci:${busybox}:latest AS build`,
        "ARG TARGETARCH",
        'RUN mkdir -p /out && echo "built for $TARGETARCH" > /out/info.txt',
        `FROM oci:${pwbase}:latest`,
        "RUN mkdir -p /app && chown app:app /app",
        "COPY --from=build /out/info.txt /app/info.txt",
        "USER app",
      ].join("\n"),
    );
    const dry = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "--dry-run"]);
    assert.match(dry.stdout, /delegated Dockerfile:3 RUN mkdir -p \/out/);
    assert.doesNotMatch(dry.stdout, /emulated/, "the build stage runs on the build platform");
    const out = path.join(work, "gopattern-out");
    const r = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stage build done for linux\/arm64 in .* on buildah/);
    assert.match(r.stderr, /stage 1 done for linux\/arm64 in [0-9.]+s\n/, "the final stage is native");
    assert.doesNotMatch(r.stderr, /emulation/);
    assert.match(r.stderr, /Dockerfile: 6 steps ran natively, 4 on buildah, over 2 platforms\n/);
    for (const arch of ["amd64", "arm64"]) {
      const dir = await tempDir("gp");
      try {
        const rootfs = await unpack(out, arch, dir);
        const { readFile, stat } = await import("node:fs/promises");
        assert.equal(await readFile(`${rootfs}/app/info.txt`, "utf8"), `built for ${arch}\n`);
        assert.equal((await stat(`${rootfs}/app`)).uid, 1000, "chown by name in the native stage");
      } finally {
        await cleanup(dir);
      }
    }
    // Nothing changed: buildah is not started again; its kept results give the same image.
    const again = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}-again`]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stderr,
      /Dockerfile: 6 steps ran natively, 4 on buildah \(cached\), over 2 platforms\n/,
    );
    assert.equal(digestOf(again.stdout), digestOf(r.stdout));
    // A file added to the context: the build stage runs again.
    await writeFile(path.join(ctx, "added.txt"), "new\n");
    const changed = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}-changed`]);
    assert.equal(changed.code, 0, changed.stderr);
    assert.match(changed.stderr, /Dockerfile: 6 steps ran natively, 4 on buildah, over 2 platforms\n/);
  });

  it("files of a per-platform base keep their own platform's contents when native steps change them", async () => {
    // Same path, same size, different bytes per platform: spooled base files must not collide.
    const ctx = path.join(work, "perplat");
    for (const a of ["amd64", "arm64"]) {
      await mkdir(path.join(ctx, a), { recursive: true });
      await writeFile(path.join(ctx, a, "arch"), `${a}\n`);
      await writeFile(path.join(ctx, a, "big"), `${a}\n`.repeat(50_000));
    }
    await writeFile(
      path.join(ctx, "Dockerfile"),
      `FROM oci:${pwbase}:latest\nARG TARGETARCH\nCOPY \${TARGETARCH}/ /etc/\n`,
    );
    const baseOut = path.join(work, "perplat-base");
    const b = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${baseOut}`]);
    assert.equal(b.code, 0, b.stderr);
    const ctx2 = path.join(work, "perplat2");
    await mkdir(ctx2, { recursive: true });
    await writeFile(
      path.join(ctx2, "Dockerfile"),
      `FROM oci:${baseOut}:latest\nRUN chmod 0600 /etc/arch /etc/big\n`,
    );
    const out = path.join(work, "perplat-out");
    const r = await dfBuild(ctx2, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    const { readFile } = await import("node:fs/promises");
    for (const arch of ["amd64", "arm64"]) {
      const dir = await tempDir("pp");
      try {
        const rootfs = await unpack(out, arch, dir);
        assert.equal(await readFile(`${rootfs}/etc/arch`, "utf8"), `${arch}\n`, `${arch}: its own /etc/arch`);
        assert.equal(await readFile(`${rootfs}/etc/big`, "utf8"), `${arch}\n`.repeat(50_000));
      } finally {
        await cleanup(dir);
      }
    }
  });

  it("COPY --parents keeps each source's path (from a /./ on), with the directories' own modes", async () => {
    // No builder here takes --parents (buildah 1.28 and BuildKit 0.17's built-in frontend do
    // not), so this checks the documented result rather than a differential one.
    const ctx = path.join(work, "parents");
    await mkdir(path.join(ctx, "apps", "web", "src"), { recursive: true });
    await mkdir(path.join(ctx, "apps", "api"), { recursive: true });
    await mkdir(path.join(ctx, "pkgs", "ui"), { recursive: true });
    await chmod(path.join(ctx, "apps", "web"), 0o750);
    await writeFile(path.join(ctx, "apps", "web", "package.json"), "{}\n");
    await writeFile(path.join(ctx, "apps", "web", "src", "main.js"), "main\n");
    await writeFile(path.join(ctx, "apps", "api", "package.json"), "{}\n");
    await writeFile(path.join(ctx, "pkgs", "ui", "package.json"), "{}\n");
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        `FROM oci:${busybox}:latest AS src`,
        "COPY --parents apps/*/package.json pkgs/*/package.json /ws/",
        "COPY --parents ./apps/./web/src /flat/",
        "COPY --parents=false apps/web/package.json apps/api/package.json /plain/",
        "RUN chown -R app /ws/pkgs",
        `FROM oci:${busybox}:latest`,
        "COPY --from=src --parents /ws/./pkgs/ui /from-stage/",
        "COPY --from=src /ws /ws",
        "COPY --from=src /flat /flat",
        "COPY --from=src /plain /plain",
      ].join("\n"),
    );
    const out = path.join(work, "parents-out");
    const r = await dfBuild(ctx, ["-p", "linux/amd64", "-o", `oci:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /on buildah/);
    const { tree } = await flatten(out, "amd64");
    const has = (line: string) =>
      assert.ok(
        tree.some((l) => l.startsWith(line)),
        `${line} in\n${tree.join("\n")}`,
      );
    has("ws/apps d 755 0 0");
    has("ws/apps/web d 750 0 0");
    has("ws/apps/web/package.json f 644 0 0");
    has("ws/apps/api/package.json f 644 0 0");
    has("ws/pkgs/ui/package.json f 644 1000 0"); // chown USER keeps the group
    assert.ok(!tree.some((l) => l.startsWith("ws/apps/web/src")), "only what the patterns name");
    has("flat/web/src/main.js f 644 0 0");
    assert.ok(!tree.some((l) => l.startsWith("flat/apps")), "the path is kept from the /./ on");
    has("plain/package.json f 644 0 0");
    has("from-stage/pkgs/ui/package.json f 644 1000 0");
    assert.ok(!tree.some((l) => l.startsWith("from-stage/ws")), "--from with a /./ pivot");
  });

  it("ADD of an http(s) URL downloads natively as buildah does (0600, named after the URL, not unpacked); --checksum holds", async () => {
    const { createServer } = await import("node:http");
    const { createHash } = await import("node:crypto");
    const { gzipSync } = await import("node:zlib");
    const data = Buffer.from("remote data\n");
    const tgz = gzipSync(Buffer.alloc(1024)); // gzip, but ADD never unpacks what it downloads
    const server = createServer((req, res) => {
      if (req.url === "/files/data.txt") res.end(data);
      else if (req.url === "/files/pkg.tar.gz") res.end(tgz);
      else if (req.url === "/go") res.writeHead(302, { location: "/files/data.txt" }).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const ctx = path.join(work, "addurl");
      await mkdir(ctx, { recursive: true });
      await writeFile(
        path.join(ctx, "Dockerfile"),
        [
          `FROM oci:${busybox}:latest`,
          `ADD ${base}/files/data.txt /srv/`,
          `ADD ${base}/files/pkg.tar.gz /srv/pkg/`,
          `ADD --chmod=0644 ${base}/go /srv/renamed.txt`,
          `ADD --chown=app:staff ${base}/files/data.txt /srv/owned`,
        ].join("\n"),
      );
      const r = await both(path.join(ctx, "Dockerfile"), ctx, "addurl", ["linux/amd64"]);
      assert.doesNotMatch(r.stderr, /on buildah/, "downloaded natively");
      const flat = await flatten(r.layout, "amd64");
      assert.ok(flat.tree.some((l) => l.startsWith("srv/data.txt f 600 0 0")));
      assert.ok(flat.tree.some((l) => l.startsWith("srv/pkg/pkg.tar.gz f 600 0 0")));

      // --checksum (which buildah 1.28 does not take): a match builds, a mismatch writes nothing.
      const sum = createHash("sha256").update(data).digest("hex");
      const out = path.join(work, "addurl-sum");
      await writeFile(
        path.join(ctx, "Dockerfile"),
        `FROM scratch\nADD --checksum=sha256:${sum} ${base}/files/data.txt /d\n`,
      );
      const ok = await dfBuild(ctx, ["-p", "linux/amd64", "-o", `oci:${out}`]);
      assert.equal(ok.code, 0, ok.stderr);
      const bad: [string, RegExp][] = [
        [
          `ADD --checksum=sha256:${"0".repeat(64)} ${base}/files/data.txt /d`,
          /Dockerfile:2: ADD: http:\/\/127\.0\.0\.1:\d+\/files\/data\.txt has checksum sha256:[0-9a-f]{64}, not sha256:0{64}/,
        ],
        [
          `ADD --checksum=md5:abc ${base}/files/data.txt /d`,
          /--checksum=md5:abc is not a sha256, sha384 or sha512 digest/,
        ],
        [
          `ADD ${base}/nothing-here /d`,
          /Dockerfile:2: ADD: http:\/\/127\.0\.0\.1:\d+\/nothing-here answered HTTP 404/,
        ],
        ["ADD --checksum=sha256:abc local.txt /d", /ADD --checksum needs exactly one http\(s\) source/],
      ];
      await writeFile(path.join(ctx, "local.txt"), "x");
      for (const [line, re] of bad) {
        await writeFile(path.join(ctx, "Dockerfile"), `FROM scratch\n${line}\n`);
        const b = await dfBuild(ctx, ["-p", "linux/amd64", "-o", `oci:${out}-bad`]);
        assert.equal(b.code, 1, line);
        assert.match(b.stderr, re, line);
        assert.doesNotMatch(b.stderr, /internal error|\n\s+at /);
      }
      await assert.rejects(import("node:fs/promises").then((f) => f.stat(`${out}-bad`)));
    } finally {
      server.close();
    }
  });

  it("COPY --from an image reads that image's files for each platform, natively", async () => {
    const ctx = path.join(work, "fromimage");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      `FROM scratch\nCOPY --from=oci:${pwbase}:latest /etc/group /etc/passwd /etc/\n`,
    );
    const out = path.join(work, "fromimage-out");
    const r = await dfBuild(ctx, ["-p", "linux/amd64,linux/arm64", "-o", `oci:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stage 0 done for linux\/arm64 in [0-9.]+s\n/, "native");
    const dir = await tempDir("fi");
    try {
      const rootfs = await unpack(out, "arm64", dir);
      const { readFile } = await import("node:fs/promises");
      assert.match(await readFile(`${rootfs}/etc/group`, "utf8"), /^staff:x:50:$/m);
      assert.match(await readFile(`${rootfs}/etc/passwd`, "utf8"), /^app:x:1000:1001:/m);
    } finally {
      await cleanup(dir);
    }
  });

  it("seed 003: ARG ARCH={{arch}} picks the base per platform; the RUN goes to buildah, arm64 under announced emulation; buildah alone's tree", async () => {
    const arm = ARM_BUSYBOX;
    await import("node:fs/promises")
      .then((f) => f.stat(arm))
      .catch(() => {
        throw new Error(
          `${arm} is missing: run bash .ci/setup, which fetches it from the machine's Debian mirror`,
        );
      });
    const bases = path.join(work, "bases");
    await cp(busybox, path.join(bases, "amd64"), { recursive: true });
    const root = path.join(work, "arm-rootfs", "rootfs");
    await mkdir(path.join(root, "bin"), { recursive: true });
    await copyFile(arm, path.join(root, "bin", "busybox"));
    for (const c of ["sh", "echo", "uname"]) await symlink("busybox", path.join(root, "bin", c));
    await writeFile(path.join(work, "arm-rootfs", "Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n");
    await bud(path.join(work, "arm-rootfs", "Dockerfile"), path.join(work, "arm-rootfs"), {
      out: path.join(bases, "arm64"),
      platform: "linux/arm64",
    });
    const ctx = path.join(work, "seed003");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      // The FROM spans lines: the builder gets it back on one line, later line numbers kept.
      `ARG ARCH=amd64\nFROM \\\n  oci:${bases}/\${ARCH}:latest\nARG ARCH\nRUN echo "built for \${ARCH} on $(uname -m)" > /built\n`,
    );
    const out = path.join(work, "seed003-out");
    // The single buildah storage of earlier versions, left in the cache: removed on first use.
    const legacy = path.join(work, "cache", "buildah", "graph", "vfs");
    await mkdir(legacy, { recursive: true });
    await writeFile(path.join(legacy, "layer"), "old\n");
    const r = await dfBuild(ctx, [
      "-p",
      "linux/amd64,linux/arm64",
      "--build-arg",
      "ARCH={{arch}}",
      "-o",
      `oci:${out}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(path.join(work, "cache", "buildah", "graph")), false, "the old storage is gone");
    assert.match(r.stderr, /warning: Dockerfile:5: stage 0 runs under emulation for linux\/arm64 on buildah/);
    assert.doesNotMatch(r.stderr, /emulation for linux\/amd64/);
    assert.match(r.stderr, /; 1 stage under emulation\n/);
    const { readFile } = await import("node:fs/promises");
    for (const [arch, cpu] of [
      ["amd64", "x86_64"],
      ["arm64", "aarch64"],
    ] as const) {
      // Differential: seed 003's own loop (one build per ARCH) with buildah alone.
      const theirs = path.join(work, `seed003-buildah-${arch}`);
      await bud(path.join(ctx, "Dockerfile"), ctx, {
        out: theirs,
        epoch: "1700000000",
        platform: `linux/${arch}`,
        extra: ["--build-arg", `ARCH=${arch}`],
      });
      await sameTreeAndConfig(out, theirs, arch, `seed 003 ${arch}`);
      const dir = await tempDir("s003");
      try {
        const rootfs = await unpack(out, arch, dir);
        assert.equal(await readFile(`${rootfs}/built`, "utf8"), `built for ${arch} on ${cpu}\n`);
      } finally {
        await cleanup(dir);
      }
    }
  });

  it("a builders map sends arm64 to one BuildKit daemon and amd64 to another; one index comes out", async () => {
    const tools = "/usr/local/lib/polyarch-tools/bin";
    await import("node:fs/promises")
      .then((f) => f.stat(`${tools}/buildkitd`))
      .catch(() => {
        throw new Error(
          `${tools}/buildkitd is missing: run bash .ci/setup, which builds BuildKit from the Go module proxy`,
        );
      });
    const { startRegistry } = await import("../src/testing/registry.js");
    const { freePort } = await import("../src/testing/tools.js");
    const { spawn } = await import("node:child_process");
    const reg = await startRegistry();
    const daemons: { addr: string; stop: () => void }[] = [];
    try {
      // A two-platform busybox base in the registry (BuildKit reads bases from registries),
      // from the per-arch bases the seed 003 case above made.
      const bases = path.join(work, "bases");
      await buildah(["manifest", "create", "bkbase"]);
      for (const a of ["amd64", "arm64"])
        await buildah(["manifest", "add", "bkbase", `oci:${path.join(bases, a)}:latest`]);
      await buildah([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "bkbase",
        `docker://${reg.host}/base/busybox:1`,
      ]);
      for (const name of ["amd64-node", "arm64-node"]) {
        const port = await freePort();
        const dir = path.join(work, name);
        await mkdir(dir, { recursive: true });
        await writeFile(
          path.join(dir, "buildkitd.toml"),
          `[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n[registry."${reg.host}"]\n  http = true\n  insecure = true\n`,
        );
        const child = spawn(
          `${tools}/buildkitd`,
          [
            "--addr",
            `tcp://127.0.0.1:${port}`,
            "--root",
            path.join(dir, "root"),
            "--config",
            path.join(dir, "buildkitd.toml"),
          ],
          {
            stdio: "ignore",
            env: { ...process.env, PATH: `/usr/sbin:${process.env["PATH"]}` },
          },
        );
        daemons.push({ addr: `tcp://127.0.0.1:${port}`, stop: () => child.kill("SIGTERM") });
        await eventually(async () => {
          const w = await mustRun(`${tools}/buildctl`, [
            "--addr",
            `tcp://127.0.0.1:${port}`,
            "debug",
            "workers",
          ]);
          if (!/linux\/amd64/.test(w)) throw new Error("no worker yet");
        }, 20_000);
      }
      const ctx = path.join(work, "bkmap");
      await mkdir(ctx, { recursive: true });
      await writeFile(
        path.join(ctx, "Dockerfile"),
        `FROM ${reg.host}/base/busybox:1\nARG TARGETARCH\nRUN echo "on $(uname -m)" > /where\n`,
      );
      const out = path.join(work, "bkmap-out");
      const r = await polyarch(
        [
          ...dockerfileBuild(ctx),
          "--builder",
          `linux/amd64=${daemons[0]!.addr}`,
          "--builder",
          `linux/arm64=${daemons[1]!.addr}`,
          "-o",
          `oci:${out}`,
          "--push",
          `${reg.host}/acme/where:latest`,
        ],
        { env: { ...env(), PATH: `${tools}:${process.env["PATH"]}` } },
      );
      assert.equal(r.code, 0, r.stderr);
      // Each daemon's result (its base's layer and its RUN's) went up as soon as it came back.
      assert.match(r.stderr, /6 blobs uploaded \([^,]+, 4 while building\)/);
      assert.match(
        r.stderr,
        new RegExp(`stage 0 done for linux/amd64 in .* on buildkit ${daemons[0]!.addr}`),
      );
      assert.match(
        r.stderr,
        new RegExp(`stage 0 done for linux/arm64 in .* on buildkit ${daemons[1]!.addr}`),
      );
      assert.doesNotMatch(r.stderr, /emulation/, "a builder mapped to a platform counts as native");
      // The same map from polyarch.yaml, for run; info checks each daemon.
      const repo = path.join(work, "bkrepo");
      await mkdir(repo, { recursive: true });
      const git = await gitRepo(repo);
      await cp(path.join(ctx, "Dockerfile"), path.join(repo, "Dockerfile"));
      await writeFile(
        path.join(repo, "polyarch.yaml"),
        `images:\n  - name: where\n    dockerfile: Dockerfile\nplatforms: [linux/amd64, linux/arm64]\nbuilders:\n  linux/amd64: ${daemons[0]!.addr}\n  linux/arm64: ${daemons[1]!.addr}\ntags: [commit-short]\n`,
      );
      await git("add", ".");
      await git("commit", "-q", "-m", "x");
      const toolsEnv = { ...env(), PATH: `${tools}:${process.env["PATH"]}` };
      const info = await polyarch(["info"], { cwd: repo, env: toolsEnv });
      assert.match(
        info.stdout,
        new RegExp(`ok {4}builder linux/arm64 +${daemons[1]!.addr}: platforms .*linux/arm64`),
      );
      const viaRun = await polyarch(["run", "--stages", "build,publish"], { cwd: repo, env: toolsEnv });
      assert.equal(viaRun.code, 0, viaRun.stderr);
      assert.match(
        viaRun.stderr,
        new RegExp(`linux/arm64 stage 0 done in .* on buildkit ${daemons[1]!.addr}`),
      );
      await writeFile(
        path.join(repo, "polyarch.yaml"),
        "images:\n  - name: where\n    dockerfile: Dockerfile\nbuilders:\n  linux/arm64: docker://nope\n",
      );
      const bad = await polyarch(["run", "--dry-run"], { cwd: repo, env: toolsEnv });
      assert.match(bad.stderr, /builders\.linux\/arm64: "docker:\/\/nope" is not a builder/);
      // A registry cache seeded by one node serves another: the RUN's random output comes back.
      const { readFile } = await import("node:fs/promises");
      const seeded = path.join(work, "seeded");
      await mkdir(seeded, { recursive: true });
      await writeFile(
        path.join(seeded, "Dockerfile"),
        `FROM ${reg.host}/base/busybox:1\nRUN echo "$RANDOM-$RANDOM-$RANDOM" > /id\n`,
      );
      const ids: string[] = [];
      for (const [i, d] of daemons.entries()) {
        const o = path.join(work, `seeded-out-${i}`);
        const b = await polyarch(
          [
            "build",
            "-f",
            path.join(seeded, "Dockerfile"),
            seeded,
            "-p",
            "linux/arm64",
            "--builder",
            `linux/arm64=${d.addr}`,
            "--cache",
            `${reg.host}/cache/seeded`,
            "-o",
            `oci:${o}`,
          ],
          { env: toolsEnv },
        );
        assert.equal(b.code, 0, b.stderr);
        const dir = await tempDir("seed");
        try {
          ids.push(await readFile(`${await unpack(o, "arm64", dir)}/id`, "utf8"));
        } finally {
          await cleanup(dir);
        }
      }
      assert.match(ids[0]!, /^\d+-\d+-\d+\n$/);
      assert.equal(ids[1], ids[0], "the second daemon took the step from the registry cache");
      for (const d of daemons) {
        const du = await mustRun(`${tools}/buildctl`, ["--addr", d.addr, "du"]);
        assert.match(du, /Total:\s+[1-9]/, `${d.addr} did the work`);
      }
      for (const [arch, cpu] of [
        ["amd64", "x86_64"],
        ["arm64", "aarch64"],
      ] as const) {
        const dir = await tempDir("bk");
        try {
          assert.equal(await readFile(`${await unpack(out, arch, dir)}/where`, "utf8"), `on ${cpu}\n`);
        } finally {
          await cleanup(dir);
        }
      }
    } finally {
      for (const d of daemons) d.stop();
      await reg.stop();
    }
  });

  it("a step that needs a process is named with its line and reason, and nothing is written", async () => {
    const ctx = path.join(work, "needs");
    await mkdir(ctx, { recursive: true });
    // A stage that needs a process goes to buildah; under emulation that is said first. This
    // base has no apk, so buildah's own error comes back, and nothing is written.
    await writeFile(path.join(ctx, "Dockerfile"), `FROM oci:${pwbase}:latest\nRUN apk add --no-cache curl\n`);
    const out = path.join(work, "needs-out");
    const r = await dfBuild(ctx, ["-p", "linux/arm64", "-o", `oci:${out}`]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /warning: Dockerfile:2: stage 0 runs under emulation for linux\/arm64 on buildah \(apk needs a process\); emulated builds are typically 10–40× slower/,
    );
    assert.match(r.stderr, /buildah failed to build stage 0 of Dockerfile for linux\/arm64:[\s\S]*\/bin\/sh/);
    const failing = await polyarch(
      ["build", "-f", path.join(ctx, "Dockerfile.fail"), ctx, "-p", "linux/amd64", "-o", `oci:${out}`],
      { env: env() },
    );
    assert.match(failing.stderr, /cannot read the Dockerfile/);
    await writeFile(
      path.join(ctx, "Dockerfile"),
      `FROM oci:${busybox}:latest\nRUN echo failing on purpose && exit 3\n`,
    );
    const f2 = await dfBuild(ctx, ["-p", "linux/amd64", "-o", `oci:${out}`]);
    assert.equal(f2.code, 1);
    assert.match(
      f2.stderr,
      /buildah failed to build stage 0 of Dockerfile for linux\/amd64:[\s\S]*failing on purpose/,
    );
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    await assert.rejects(import("node:fs/promises").then((f) => f.stat(out)));
    const bad: [string, RegExp][] = [
      [
        "FROM scratch\nCOPY missing.txt /x\n",
        /Dockerfile:2: COPY: missing\.txt not found in the build context/,
      ],
      ["FROM scratch\nFROBNICATE\n", /Dockerfile:2: unknown instruction: FROBNICATE/],
      [`FROM oci:${busybox}:latest\n`, /has no linux\/arm64 image|is a single linux\/amd64 image/],
      [
        "FROM scratch\nCOPY ../outside /x\n",
        /Dockerfile:2: COPY: \.\.\/outside is outside the build context/,
      ],
      [
        `FROM scratch\nCOPY --from=oci:${work}/no-such-layout:latest /a /a\n`,
        /Dockerfile:2: COPY: --from=oci:.* is no stage of Dockerfile, and as an image it cannot be read/,
      ],
      // A native RUN fails where a real shell would: no shell, or a command the image lacks.
      ["FROM scratch\nRUN mkdir /x\n", /Dockerfile:2: RUN would fail: the image has no \/bin\/sh to run it/],
      // The JSON form has no shell: `true` is then a program the image must have, as runc would exec it.
      [
        'FROM scratch\nRUN ["/bin/true"]\n',
        /Dockerfile:2: RUN would fail: \/bin\/true: not found in the image/,
      ],
      [
        `FROM oci:${pwbase}:latest\nRUN mkdir /x && setcap cap_net_raw+ep /bin/busybox\n`,
        /Dockerfile:2: RUN would fail: setcap: not found in the image/,
      ],
      [
        `FROM oci:${pwbase}:latest\nRUN mkdir /etc && true\n`,
        /Dockerfile:2: RUN would fail: mkdir: cannot create directory '\/etc': File exists/,
      ],
      [
        "FROM scratch\nHEALTHCHECK --interval=soon CMD true\n",
        /Dockerfile:2: HEALTHCHECK: "soon" is not a duration/,
      ],
    ];
    for (const [text, re] of bad) {
      await writeFile(path.join(ctx, "Dockerfile"), text);
      const b = await dfBuild(ctx, ["-p", "linux/arm64", "-o", `oci:${out}`]);
      assert.equal(b.code, 1, text);
      assert.match(b.stderr, re, text);
      assert.doesNotMatch(b.stderr, /internal error/);
    }
    const t = await dfBuild(ctx, ["--target", "nope", "--dry-run"]);
    assert.match(t.stderr, /has no stage named "nope"/);
    // A command failing inside a ";" list does not stop the shell: that RUN goes to the builder.
    await writeFile(path.join(ctx, "Dockerfile"), `FROM oci:${busybox}:latest\nRUN rm /nope; mkdir /y\n`);
    const semi = await dfBuild(ctx, ["-p", "linux/amd64", "-o", `oci:${out}-semi`]);
    assert.equal(semi.code, 0, semi.stderr);
    assert.match(semi.stderr, /1 on buildah/);
  });

  it("polyarch run builds a Dockerfile image from polyarch.yaml; --dry-run shows its steps", async () => {
    const repo = path.join(work, "runrepo");
    await mkdir(path.join(repo, "web", "static"), { recursive: true });
    const git = await gitRepo(repo);
    await writeFile(path.join(repo, "web", "static", "index.html"), "<p>web</p>\n");
    await writeFile(
      path.join(repo, "web", "Dockerfile"),
      `FROM oci:${pwbase}:latest\nRUN mkdir -p /srv && chown app /srv\nCOPY static/ /srv/static/\nUSER app\n`,
    );
    await writeFile(
      path.join(repo, "polyarch.yaml"),
      "images:\n  - name: web\n    dir: web\n    dockerfile: Dockerfile\n    labels: { team: web }\nplatforms: [linux/amd64, linux/arm64]\ntags: [commit-short]\n",
    );
    await git("add", ".");
    await git("commit", "-q", "-m", "web");
    const dry = await polyarch(["run", "--dry-run"], { cwd: repo, env: env() });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /build {3}web linux\/arm64 from .*Dockerfile/);
    assert.match(dry.stdout, /web +native +Dockerfile:2 RUN mkdir -p \/srv && chown app \/srv/);
    assert.doesNotMatch(
      dry.stdout,
      /lint {4}web|test {4}web/,
      "Go's lint and test do not run for a Dockerfile image",
    );
    const r = await polyarch(["run"], { cwd: repo, env: env() });
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(
      await mustRun("skopeo", [
        "inspect",
        "--config",
        "--override-arch",
        "arm64",
        `oci:${path.join(repo, "out", "oci", "web")}:${(await git("rev-parse", "--short=8", "HEAD")).trim()}`,
      ]),
    ) as { architecture: string; config: { User: string; Labels: Record<string, string> } };
    assert.equal(cfg.architecture, "arm64");
    assert.equal(cfg.config.User, "app");
    assert.equal(cfg.config.Labels["team"], "web");
    await writeFile(
      path.join(repo, "polyarch.yaml"),
      "images:\n  - name: web\n    dir: web\n    dockerfile: Nope\n",
    );
    const missing = await polyarch(["run", "--dry-run"], { cwd: repo, env: env() });
    assert.match(missing.stderr, /image web: its Dockerfile web\/Nope does not exist/);
  });
});
