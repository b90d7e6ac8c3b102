/**
 * Issue 8's classes, one regression each, as a user meets them: the CLI against the real
 * Distribution registry, with a fault proxy and scripted hostile servers on loopback where a
 * real registry cannot misbehave on purpose. Every failure must be one sentence and a hint:
 * never an internal error, a stack or an unhandled event.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, cp, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { sha256 } from "../src/digest/index.js";
import { DockerConfigCredentials, RegistryClient, Transport } from "../src/registry/index.js";
import { startHostile } from "../src/testing/hostile.js";
import { startProxy } from "../src/testing/proxy.js";
import { type RunningRegistry, startRegistry } from "../src/testing/registry.js";
import { mustRun } from "../src/testing/tools.js";
import { cleanup, gitExample, polyarch, tempDir } from "./_fixture.js";

let work: string;
let src: string;
let lay: string;
let reg: RunningRegistry;
let authReg: RunningRegistry;
let srcDigest: string;
const SECRET = "S3ntinel-pa55word";
const env = (extra: Record<string, string> = {}) => ({
  POLYARCH_CACHE_DIR: path.join(work, "cache"),
  POLYARCH_RETRY_DELAYS_MS: "10,20",
  DOCKER_CONFIG: path.join(work, "docker"),
  ...extra,
});
const digestOf = (out: string) => /@(sha256:[a-f0-9]{64})/.exec(out)?.[1];

/** The shape every failure must have (issue 8: an internal error is a bug in every case). */
function cleanFailure(r: { code: number; stdout: string; stderr: string }, message: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got: ${r.stdout}`);
  assert.match(r.stderr, message);
  assert.match(r.stderr, /^polyarch: error: .+\n {2}hint: .+$/m, "one sentence and a hint");
  assert.doesNotMatch(r.stderr, /internal error|Unhandled|\n\s+at .+:\d+:\d+\)?\n|MaxListenersExceeded/);
}

before(async () => {
  work = await tempDir("hard");
  src = await gitExample("hello", path.join(work, "src"));
  lay = path.join(work, "lay");
  const b = await polyarch(["build", src, "-p", "linux/amd64,linux/arm64", "-o", `oci:${lay}`], {
    env: env(),
  });
  assert.equal(b.code, 0, b.stderr);
  srcDigest = digestOf(b.stdout)!;
  reg = await startRegistry();
  const htp = path.join(work, "htpasswd");
  await mustRun("htpasswd", ["-Bbc", htp, "ci-user", SECRET]);
  authReg = await startRegistry({ kind: "htpasswd", file: htp });
  const p = await polyarch(["copy", `oci:${lay}:latest`, `${reg.host}/acme/src:v1`], { env: env() });
  assert.equal(p.code, 0, p.stderr);
});
after(async () => {
  await reg.stop();
  await authReg.stop();
  await cleanup(work);
});

describe("credentials go only to the registry's own origin", () => {
  it("an upload Location and a tag-list Link on another host:port receive no credentials", async () => {
    const proxy = await startProxy(authReg.host);
    const bait = await startHostile();
    try {
      const login = await polyarch(["login", proxy.host, "-u", "ci-user", "--password-stdin"], {
        env: env(),
        input: SECRET,
      });
      assert.equal(login.code, 0, login.stderr);
      // 1. The registry hands out upload sessions on the bait host.
      proxy.rewriteHeaders = (h, req) => {
        if (req.method === "POST" && typeof h.location === "string")
          h.location = h.location.replace(/^https?:\/\/[^/]+/, bait.origin);
      };
      const r = await polyarch(["copy", `oci:${lay}:latest`, `${proxy.host}/team/app:v1`], { env: env() });
      cleanFailure(r, /401|needs a user and password|refused the credentials/);
      assert.ok(bait.requests.length > 0, "the hostile Location was used");
      assert.deepEqual(
        bait.requests.filter((q) => q.authorization !== undefined),
        [],
        "no Authorization header went to the other host",
      );
      assert.doesNotMatch(r.stderr + r.stdout, new RegExp(SECRET));
      // 2. Tags listed through the proxy page on to the bait host.
      proxy.rewriteHeaders = undefined;
      const ok = await polyarch(["copy", `oci:${lay}:latest`, `${proxy.host}/team/app:v1`], { env: env() });
      assert.equal(ok.code, 0, ok.stderr);
      bait.requests.length = 0;
      proxy.rewriteHeaders = (h, req) => {
        if (req.path.includes("/tags/list"))
          h.link = `<${bait.origin}/v2/team/app/tags/list?n=1&last=v1>; rel="next"`;
      };
      const client = new RegistryClient(
        new Transport({
          credentials: new DockerConfigCredentials({ configFile: path.join(work, "docker", "config.json") }),
          retry: { attempts: 1 },
        }),
      );
      await assert.rejects(
        client.listTags({ registry: proxy.host, repository: "team/app" }),
        /401|user and password|refused/,
      );
      await client.transport.close();
      assert.equal(bait.requests.length >= 1, true, "the Link was followed");
      assert.ok(
        bait.requests.every((q) => q.authorization === undefined),
        "no credentials for the next page",
      );
    } finally {
      await proxy.stop();
      await bait.stop();
    }
  });
});

describe("every read is verified", () => {
  it("a manifest changed in transit on a read by tag is refused, and nothing is published", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "GET", path: /\/manifests\/v1$/, times: 1, kind: "flip" });
      const r = await polyarch(["copy", `${proxy.host}/acme/src:v1`, `${reg.host}/acme/flipped:v1`], {
        env: env(),
      });
      cleanFailure(r, /digest mismatch for manifest .*: the registry says sha256:[a-f0-9]{64}/);
      const tags = await fetch(`${reg.url}/v2/acme/flipped/tags/list`);
      assert.equal(tags.status, 404, "the destination tag was never written");
      const again = await polyarch(["copy", `${proxy.host}/acme/src:v1`, `${reg.host}/acme/flipped:v1`], {
        env: env(),
      });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(digestOf(again.stdout), srcDigest, "the verified digest is the one published");
    } finally {
      await proxy.stop();
    }
  });
});

describe("errors blame the right thing, within one retry budget", () => {
  it("a failing source in a registry copy is named as the source, each blob tried at most 3 times", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "GET", path: /\/blobs\/sha256:/, times: 1000, kind: "500" });
      const r = await polyarch(["copy", `${proxy.host}/acme/src:v1`, `${reg.host}/acme/blame:v1`], {
        env: env(),
      });
      cleanFailure(
        r,
        new RegExp(
          `blob sha256:[a-f0-9]{64}.*${proxy.host.replace(/\./g, "\\.")}|${proxy.host.replace(/\./g, "\\.")}.*blob`,
        ),
      );
      assert.doesNotMatch(r.stderr, new RegExp(`cannot reach ${reg.host.replace(/\./g, "\\.")}`));
      const perBlob = new Map<string, number>();
      for (const l of proxy.log.filter((x) => x.method === "GET" && /\/blobs\/sha256:/.test(x.path)))
        perBlob.set(l.path, (perBlob.get(l.path) ?? 0) + 1);
      assert.ok(perBlob.size > 0);
      for (const [p, n] of perBlob) assert.ok(n <= 3, `${p} was fetched ${n} times`);
    } finally {
      await proxy.stop();
    }
  });

  it("a multi-tag push failing at its second tag says which tags moved; a rerun completes the set", async () => {
    const proxy = await startProxy(reg.host);
    try {
      proxy.faults.push({ method: "PUT", path: /\/manifests\/c$/, times: 3, kind: "500" });
      const args = [
        "build",
        src,
        "-p",
        "linux/amd64,linux/arm64",
        "--push",
        `${proxy.host}/acme/tags:a`,
        "-t",
        "b",
        "-t",
        "c",
      ];
      const r = await polyarch(args, { env: env() });
      cleanFailure(r, /tag c could not be set: .*; tags moved: b; not moved: c, a/);
      const again = await polyarch(args, { env: env() });
      assert.equal(again.code, 0, again.stderr);
      for (const t of ["a", "b", "c"]) {
        const raw = await mustRun("skopeo", [
          "inspect",
          "--tls-verify=false",
          "--raw",
          `docker://${reg.host}/acme/tags:${t}`,
        ]);
        assert.equal(sha256(raw), digestOf(again.stdout), t);
      }
    } finally {
      await proxy.stop();
    }
  });
});

describe("layouts: no crash, no leftovers, no following links", () => {
  const broken = async (name: string, spoil: (blob: string) => Promise<void>) => {
    const dir = path.join(work, name);
    await cp(lay, dir, { recursive: true });
    await chmod(path.join(dir, "blobs", "sha256"), 0o755);
    const blobs = path.join(dir, "blobs", "sha256");
    const sizes = await Promise.all(
      (await readdir(blobs)).map(async (n) => ({ n, s: (await stat(path.join(blobs, n))).size })),
    );
    const biggest = sizes.sort((a, b) => b.s - a.s)[0]!.n;
    await spoil(path.join(blobs, biggest));
    return dir;
  };

  it("a missing source blob is named; no new layout is left", async () => {
    const from = await broken("missing", (b) => rm(b, { force: true }));
    const to = path.join(work, "out-missing");
    const r = await polyarch(["copy", `oci:${from}:latest`, `oci:${to}`], { env: env() });
    cleanFailure(r, /blob sha256:[a-f0-9]{64} is missing from/);
    await assert.rejects(stat(to), "nothing half-written");
  });

  it("a corrupt source blob fails the same way three times, leaves nothing, and the path stays usable", async () => {
    const from = await broken("corrupt", async (b) => {
      const data = await readFile(b);
      data[1000] = data[1000]! ^ 0xff;
      await chmod(b, 0o644);
      await writeFile(b, data);
    });
    const to = path.join(work, "out-corrupt");
    for (let i = 0; i < 3; i++) {
      const r = await polyarch(["copy", `oci:${from}:latest`, `oci:${to}`], { env: env() });
      cleanFailure(r, /digest mismatch for blob/);
      await assert.rejects(stat(to), `try ${i + 1} left nothing`);
    }
    const ok = await polyarch(["copy", `oci:${lay}:latest`, `oci:${to}`], { env: env() });
    assert.equal(ok.code, 0, ok.stderr);
    await mustRun("umoci", ["gc", "--layout", to]);
  });

  it("a source blob that is a symlink is refused, not followed", async () => {
    const outside = path.join(work, "outside-blob");
    const from = await broken("linked", async (b) => {
      await cp(b, outside);
      await rm(b);
      await symlink(outside, b);
    });
    const to = path.join(work, "out-linked");
    const r = await polyarch(["copy", `oci:${from}:latest`, `oci:${to}`], { env: env() });
    cleanFailure(r, /is a symlink/);
    await assert.rejects(stat(to));
  });

  it("temp files of a killed writer are removed by the next write; umoci gc then passes", async () => {
    const to = path.join(work, "out-killed");
    const first = await polyarch(["copy", `oci:${lay}:latest`, `oci:${to}`], { env: env() });
    assert.equal(first.code, 0, first.stderr);
    // A writer that dies with its temp file in place, as kill -9 leaves it.
    const blobs = path.join(to, "blobs", "sha256");
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    const pid = child.pid!;
    await writeFile(path.join(blobs, `${"e".repeat(64)}.tmp-${pid}-dead`), Buffer.alloc(1 << 20));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const gcBefore = await polyarch(["copy", `oci:${lay}:latest`, `oci:${to}:again`], { env: env() });
    assert.equal(gcBefore.code, 0, gcBefore.stderr);
    assert.deepEqual(
      (await readdir(blobs)).filter((n) => n.includes(".tmp-")),
      [],
    );
    await mustRun("umoci", ["gc", "--layout", to]);
  });

  it("a kodata/ that links outside the package is refused", async () => {
    const pkg = await gitExample("hello", path.join(work, "kodata-link"));
    const secrets = path.join(work, "secrets");
    await mkdir(secrets, { recursive: true });
    await writeFile(path.join(secrets, "id_rsa"), "private");
    await symlink(secrets, path.join(pkg, "kodata"));
    const to = path.join(work, "out-kodata");
    const r = await polyarch(["build", pkg, "-p", "linux/amd64", "-o", `oci:${to}`], { env: env() });
    cleanFailure(r, /kodata\/ in .* is a symlink to .*secrets, outside the package/);
    await assert.rejects(stat(to));
  });

  it("an index of 20,000 entries is copied without running out of file handles", async () => {
    const big = path.join(work, "big");
    await cp(lay, big, { recursive: true });
    const index = JSON.parse(await readFile(path.join(big, "index.json"), "utf8")) as {
      manifests: { digest: string; mediaType: string; size: number }[];
    };
    const top = index.manifests[0]!;
    const topIndex = JSON.parse(
      await readFile(path.join(big, "blobs", "sha256", top.digest.slice(7)), "utf8"),
    ) as {
      manifests: unknown[];
    };
    const child = topIndex.manifests[0]!;
    const wide = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: top.mediaType,
        manifests: Array.from({ length: 20_000 }, () => child),
      }),
    );
    const d = sha256(wide);
    await chmod(path.join(big, "blobs", "sha256"), 0o755);
    await writeFile(path.join(big, "blobs", "sha256", d.slice(7)), wide);
    await writeFile(
      path.join(big, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: top.mediaType,
            digest: d,
            size: wide.length,
            annotations: { "org.opencontainers.image.ref.name": "wide" },
          },
        ],
      }),
    );
    const r = await polyarch(["copy", `oci:${big}:wide`, `oci:${path.join(work, "out-wide")}`], {
      env: env(),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(digestOf(r.stdout), d);
  });
});

describe("secrets never in output", () => {
  const refs = [
    `ci-user:${SECRET}@${"reg.example"}/acme/app:1`,
    `https://ci-user:${SECRET}@reg.example/acme/app`,
  ];

  it("a reference with user:password@ is refused without repeating it, on every command and source", async () => {
    const dir = path.join(work, "secret-run");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "polyarch.yaml"),
      `images:\n  - name: app\n    dir: ${src}\ndestination:\n  registry: ci-user:${SECRET}@reg.example\n`,
    );
    const list = path.join(work, "secret-mirror.txt");
    await writeFile(list, `${refs[0]} ${reg.host}/m/app:1\n`);
    const cases: [string[], Record<string, string>, string?][] = [
      [["build", src, "-p", "linux/amd64", "--push", refs[0]!, "--debug"], {}],
      [["copy", refs[0]!, `oci:${path.join(work, "never")}`], {}],
      [["inspect", refs[0]!, "--json"], {}],
      [["inspect", refs[1]!], {}],
      [["mirror", "-f", list, "--json"], {}],
      [["login", `ci-user:${SECRET}@reg.example`, "-u", "x", "--password-stdin"], {}],
      [["run", "--dry-run"], {}, dir],
      [["run", "--dry-run", "--json", "--registry", `ci-user:${SECRET}@reg.example`], {}, dir],
      [["run", "--dry-run"], { REGISTRY: `ci-user:${SECRET}@reg.example` }, dir],
      [["config"], {}, dir],
    ];
    for (const [args, extra, cwd] of cases) {
      const r = await polyarch(args, { env: env(extra), ...(cwd ? { cwd } : {}), input: "pw" });
      assert.notEqual(r.code, 0, args.join(" "));
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET), `${args.join(" ")} printed the password`);
      assert.doesNotMatch(r.stderr, /internal error/, args.join(" "));
    }
  });

  it("a credential helper that prints something other than JSON is named, its output never shown", async () => {
    const bin = path.join(work, "helper-bin");
    await mkdir(bin, { recursive: true });
    const helper = path.join(bin, "docker-credential-leaky");
    await writeFile(helper, `#!/bin/sh\nprintf '{"Username":"u","Secret":"${SECRET}'\n`);
    await chmod(helper, 0o755);
    const cfg = path.join(work, "docker-leaky");
    await mkdir(cfg, { recursive: true });
    await writeFile(
      path.join(cfg, "config.json"),
      JSON.stringify({ credHelpers: { [authReg.host]: "leaky" } }),
    );
    const r = await polyarch(["inspect", `${authReg.host}/team/app:v1`], {
      env: env({ DOCKER_CONFIG: cfg, PATH: `${bin}:${process.env["PATH"]}` }),
    });
    cleanFailure(
      r,
      /credential helper docker-credential-leaky for .* printed something that is not the JSON/,
    );
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
  });
});

describe("plain mistakes get plain messages", () => {
  it("bad SOURCE_DATE_EPOCH values are refused before any work", async () => {
    for (const v of ["253402300800", "8640000000001", " 1700000000", "-1", "1e9", ""]) {
      const r = await polyarch(
        ["build", src, "-p", "linux/amd64", "-o", `oci:${path.join(work, "never-sde")}`],
        {
          env: env({ SOURCE_DATE_EPOCH: v }),
        },
      );
      cleanFailure(r, /SOURCE_DATE_EPOCH=.* (is not a whole number|is after 9999-12-31)/);
    }
    const max = await polyarch(
      ["build", src, "-p", "linux/amd64", "-o", `oci:${path.join(work, "max-sde")}`],
      {
        env: env({ SOURCE_DATE_EPOCH: "253402300799" }),
      },
    );
    assert.equal(max.code, 0, max.stderr);
    const cfg = JSON.parse(
      await mustRun("skopeo", ["inspect", "--config", `oci:${path.join(work, "max-sde")}:latest`]),
    ) as { created: string };
    assert.equal(cfg.created, "9999-12-31T23:59:59Z", "skopeo parses the latest time allowed");
  });

  it("a build directory that does not exist, a bad port in a reference, broken local files", async () => {
    cleanFailure(
      await polyarch(
        [
          "build",
          path.join(work, "no-such-dir"),
          "-p",
          "linux/amd64",
          "-o",
          `oci:${path.join(work, "never-nsd")}`,
        ],
        {
          env: env(),
        },
      ),
      /no-such-dir does not exist/,
    );
    cleanFailure(
      await polyarch(["inspect", "127.0.0.1:99999/acme/x:1"], { env: env() }),
      /99999 is not a port number/,
    );
    const cfgDir = path.join(work, "docker-dir");
    await mkdir(path.join(cfgDir, "config.json"), { recursive: true });
    cleanFailure(
      await polyarch(["inspect", `${authReg.host}/acme/src:v1`], { env: env({ DOCKER_CONFIG: cfgDir }) }),
      /config\.json is a directory/,
    );
    const lists = env({ POLYARCH_CACHE_DIR: path.join(work, "cache-lists") });
    const create = await polyarch(
      ["manifest", "create", `${reg.host}/acme/list:1`, `${reg.host}/acme/src:v1`],
      {
        env: lists,
      },
    );
    assert.equal(create.code, 0, create.stderr);
    const dir = path.join(work, "cache-lists", "manifest-lists");
    const files = await readdir(dir);
    assert.equal(files.length, 1, `one cached list: ${files.join(", ")}`);
    await writeFile(path.join(dir, files[0]!), '{"ref": "x", "entr');
    cleanFailure(
      await polyarch(["manifest", "inspect", `${reg.host}/acme/list:1`], { env: lists }),
      /local manifest list .* is damaged/,
    );
  });

  it("a YAML alias bomb in polyarch.yaml is refused", async () => {
    const dir = path.join(work, "bomb");
    await mkdir(dir, { recursive: true });
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 8; i++) {
      const prev = String.fromCharCode(97 + i);
      const next = String.fromCharCode(98 + i);
      lines.push(`${next}: &${next} [${Array(9).fill(`*${prev}`).join(",")}]`);
    }
    lines.push("images:\n  - name: x");
    await writeFile(path.join(dir, "polyarch.yaml"), `${lines.join("\n")}\n`);
    cleanFailure(await polyarch(["run", "--dry-run"], { cwd: dir, env: env() }), /polyarch\.yaml/);
  });

  it("a 1 MiB token body is refused as oversize", async () => {
    const tokens = await startHostile((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ token: "t".repeat(1 << 20) }));
    });
    const registry = await startHostile((_req, res) => {
      res.writeHead(401, { "www-authenticate": `Bearer realm="${tokens.origin}/token",service="s"` });
      res.end();
    });
    try {
      cleanFailure(
        await polyarch(["inspect", `${registry.host}/acme/x:1`], { env: env() }),
        /token response over 65536 bytes/,
      );
    } finally {
      await tokens.stop();
      await registry.stop();
    }
  });

  it("run and run --dry-run refuse the same bad polyarch.yaml, before any stage", async () => {
    const cases: [string, RegExp][] = [
      [`images:\n  - name: app\n    dir: ${src}\n    ports: [abc]\n`, /"abc" is not a port/],
      [`images:\n  - name: app\n    dir: ${src}\n    ports: [99999]\n`, /99999 is not a port/],
      [`images:\n  - name: app\n    dir: ./missing\n`, /image app: its dir missing does not exist/],
      [
        `images:\n  - name: app\n    dir: ${src}\n    base: "Not A Ref"\n`,
        /image app: base: invalid image reference/,
      ],
    ];
    for (const [yaml, re] of cases) {
      const dir = path.join(work, `cfg-${sha256(yaml).slice(7, 15)}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "polyarch.yaml"), yaml);
      const dry = await polyarch(["run", "--dry-run"], { cwd: dir, env: env() });
      const real = await polyarch(["run"], { cwd: dir, env: env() });
      cleanFailure(dry, re);
      cleanFailure(real, re);
      assert.doesNotMatch(real.stderr, /\blint\b|\btest\b|compil/, "no stage ran");
      assert.equal(dry.stderr.split("\n")[0], real.stderr.split("\n")[0], "the same sentence");
    }
  });
});
