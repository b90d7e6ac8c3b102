/**
 * The Dockerfile language (issue 9 §1–2) against a corpus of the shapes real Dockerfiles have
 * — the seeds' own among them — and BuildKit's rules for words, variables, ARG scope, stages
 * and what needs a process.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDockerfile } from "../src/builder/dockerfile/parse.js";
import { describeDockerfilePlan, fillTemplate, planDockerfile } from "../src/builder/dockerfile/plan.js";
import { keyValues, processWord, processWords } from "../src/builder/dockerfile/shell.js";
import { classifyRun, parseCaps, posixShell } from "../src/builder/dockerfile/trivial.js";
import { parsePlatform } from "../src/platform/index.js";

const AMD64 = parsePlatform("linux/amd64");
const ARM64 = parsePlatform("linux/arm64");
const ARMV7 = parsePlatform("linux/arm/v7");
const lex = { escape: "\\" as const };
const plan = (
  text: string,
  opts: { buildArgs?: Record<string, string>; target?: string; platforms?: (typeof AMD64)[] } = {},
) =>
  planDockerfile(parseDockerfile(text, "Dockerfile"), {
    platforms: opts.platforms ?? [AMD64, ARM64],
    buildPlatform: AMD64,
    buildArgs: opts.buildArgs ?? {},
    ...(opts.target ? { target: opts.target } : {}),
  });

describe("words and variables (BuildKit's shell lexer)", () => {
  const vars = new Map([
    ["A", "a"],
    ["EMPTY", ""],
    ["SP", "x y"],
  ]);
  const table: [string, string[]][] = [
    ["$A", ["a"]],
    ["${A}", ["a"]],
    ["pre${A}post", ["preapost"]],
    ["${NOPE}", []],
    ["x${NOPE}", ["x"]],
    ["${NOPE:-d}", ["d"]],
    ["${EMPTY:-d}", ["d"]],
    ["${EMPTY-d}", []],
    ["${A:-d}", ["a"]],
    ["${A:+set}", ["set"]],
    ["${EMPTY:+set}", []],
    ["${EMPTY+set}", ["set"]],
    ["${NOPE+set}", []],
    ["${NOPE:-${A}}", ["a"]],
    ["'$A'", ["$A"]],
    ['"$A b"', ["a b"]],
    ["$SP", ["x y"]],
    ["a\\ b c", ["a b", "c"]],
    ['"a\\"b"', ['a"b']],
    ['"a\\nb"', ["a\\nb"]],
    ["\\$A", ["$A"]],
    ["$", ["$"]],
    ["a$-b", ["a$-b"]],
  ];
  for (const [input, want] of table) it(input, () => assert.deepEqual(processWords(input, vars, lex), want));

  it("prefix, suffix and replacement forms with shell patterns", () => {
    const v = new Map([
      ["F", "archive.tar.gz"],
      ["P", "/usr/local/bin/tool"],
      ["S", "a*b*c"],
    ]);
    const t: [string, string][] = [
      ["${F%.*}", "archive.tar"],
      ["${F%%.*}", "archive"],
      ["${F#*.}", "tar.gz"],
      ["${F##*.}", "gz"],
      ["${P##*/}", "tool"],
      ["${P%/*}", "/usr/local/bin"],
      ["${P/local/opt}", "/usr/opt/bin/tool"],
      ["${P//\\//:}", ":usr:local:bin:tool"],
      ["${S//\\*/-}", "a-b-c"],
      ["${S#a\\*}", "b*c"],
      ["${F%x}", "archive.tar.gz"],
      ["${NOPE##*/}", ""],
    ];
    for (const [input, want] of t) assert.equal(processWord(input, v, lex), want, input);
    assert.throws(() => processWord("${P//x}", v, lex), /no replacement/);
    assert.throws(() => processWord("${P=x}", v, lex), /bad substitution/);
  });

  it("the backtick escape of `# escape=``", () => {
    assert.deepEqual(processWords("C:\\dir a` b", vars, { escape: "`" }), ["C:\\dir", "a b"]);
  });
  it("${V:?msg} fails with the message; bad forms are errors", () => {
    assert.throws(() => processWord("${NOPE:?set NOPE}", vars, lex), /NOPE: set NOPE/);
    assert.throws(() => processWord("${A", vars, lex), /missing \}/);
    assert.throws(() => processWord("${1x}", vars, lex), /bad substitution/);
    assert.throws(() => processWord("'open", vars, lex), /single-quoted/);
  });
  it("key=value pairs keep quoted spaces and split at the first =", () => {
    assert.deepEqual(keyValues('A=1 B="x y" C=z\\ w D=e=f', vars, lex, "ENV"), [
      { key: "A", value: "1" },
      { key: "B", value: "x y" },
      { key: "C", value: "z w" },
      { key: "D", value: "e=f" },
    ]);
  });
});

describe("parsing", () => {
  it("directives, continuations with comments, heredocs, JSON and shell forms, flags", () => {
    const df = parseDockerfile(
      [
        "# syntax=docker/dockerfile:1",
        "# escape=\\",
        "ARG GO=1.22",
        "FROM --platform=$BUILDPLATFORM golang:${GO} AS Build",
        "RUN --mount=type=cache,target=/root/.cache \\",
        "# a comment inside the continuation",
        "    go build -o /out/app .",
        "RUN <<EOF",
        "set -e",
        "mkdir -p /x",
        "EOF",
        'COPY <<"EOT" /etc/hello',
        "hello ${GO}",
        "EOT",
        "RUN <<-A cat > /a && <<B cat > /b",
        "\tindented",
        "\tA",
        "second",
        "B",
        "FROM scratch",
        "COPY --from=build --chmod=0755 --exclude=*.md --exclude=*.txt /out/app /app",
        'ENTRYPOINT ["/app", "--serve"]',
        "CMD /app --help",
      ].join("\n"),
      "Dockerfile",
    );
    assert.deepEqual(df.directives, { syntax: "docker/dockerfile:1", escape: "\\" });
    assert.equal(df.globalArgs.length, 1);
    assert.equal(df.stages.length, 2);
    const [build, final] = df.stages as [
      NonNullable<(typeof df.stages)[0]>,
      NonNullable<(typeof df.stages)[0]>,
    ];
    assert.equal(build.name, "build", "stage names are case-insensitive");
    assert.deepEqual(build.from.flags.get("platform"), ["$BUILDPLATFORM"]);
    const [run, here, copy, two] = build.instructions;
    assert.equal(run!.args, "go build -o /out/app .");
    assert.equal(run!.line, 5);
    assert.deepEqual(run!.flags.get("mount"), ["type=cache,target=/root/.cache"]);
    assert.deepEqual(here!.heredocs, [{ name: "EOF", content: "set -e\nmkdir -p /x\n", expand: true }]);
    assert.equal(here!.args, "<<EOF");
    assert.deepEqual(copy!.heredocs, [{ name: "EOT", content: "hello ${GO}\n", expand: false }]);
    assert.deepEqual(
      two!.heredocs.map((h) => h.content),
      ["indented\n", "second\n"],
      "<<- strips leading tabs; two heredocs in one line",
    );
    const [cp, ep, cmd] = final.instructions;
    assert.deepEqual(cp!.flags.get("exclude"), ["*.md", "*.txt"]);
    assert.deepEqual(ep!.json, ["/app", "--serve"]);
    assert.equal(cmd!.json, undefined);
    assert.equal(cmd!.args, "/app --help");
  });

  it("the seeds' Dockerfiles parse (001, 003, 004)", () => {
    for (const text of [
      'FROM scratch\nCOPY static/ /srv/static/\nCOPY app /srv/app\nCMD ["/srv/app"]\n',
      'ARG ARCH=amd64\nFROM ${ARCH}/alpine:3.20\nRUN apk add --no-cache ca-certificates\nCOPY . /app\nCMD ["/app/run"]\n',
      'FROM golang:1.9\nRUN mkdir /app\nADD . /app/\nWORKDIR /app\nRUN go build -o main .\nCMD ["/app/main"]\n',
      'FROM golang:1.22 AS builder\nRUN apt-get update && apt-get install -y gcc\nWORKDIR /src\nCOPY . .\nRUN CGO_ENABLED=1 go build -o /soda ./cmd/soda\n\nFROM alpine:3.20\nRUN mkdir /app\nADD hello /app/\nCOPY --from=builder /soda /app/soda\nWORKDIR /app\nENTRYPOINT ["./hello"]\n',
    ])
      assert.ok(parseDockerfile(text, "Dockerfile").stages.length >= 1);
  });

  it("refuses what BuildKit refuses, naming file and line", () => {
    const bad: [string, RegExp][] = [
      ["FROM a\nFROBNICATE x\n", /Dockerfile:2: unknown instruction: FROBNICATE/],
      ["FROM a\nCOPY --frm=x a b\n", /Dockerfile:2: unknown flag --frm for COPY/],
      ["FROM a\nRUN <<EOF\necho\n", /Dockerfile:2: heredoc <<EOF has no closing EOF line/],
      ["RUN echo\nFROM a\n", /Dockerfile:1: RUN before the first FROM/],
      ["# just a comment\n", /no FROM instruction/],
      ["FROM a AS x\nFROM b AS X\n", /Dockerfile:2: duplicate stage name "x"/],
      ["FROM a b c d\n", /Dockerfile:1: FROM takes an image/],
      ["# escape=x\nFROM a\n", /invalid escape directive/],
      ["FROM a\nWORKDIR\n", /Dockerfile:2: WORKDIR needs arguments/],
    ];
    for (const [text, re] of bad) assert.throws(() => parseDockerfile(text, "Dockerfile"), re, text);
  });
});

describe("trivial RUN commands", () => {
  it("accepts the closed list when every command parses", () => {
    const c = classifyRun(
      "mkdir -p -m 0750 /app/data && chown -R 65532:65532 /app ; chmod 0755 /app && ln -sf /app/x /usr/bin/x && touch /app/.keep && rm -rf /tmp/x",
    );
    assert.equal(c.native, true);
    assert.deepEqual(c.native ? c.ops.map((o) => o.op) : [], [
      "mkdir",
      "chown",
      "chmod",
      "symlink",
      "touch",
      "rm",
    ]);
  });
  it("delegates anything else, saying why", () => {
    for (const [cmd, why] of [
      ["apk add curl", /apk needs a process/],
      ["mkdir /a | tee x", /uses the shell/],
      ["mkdir $DIR", /uses the shell/],
      ["chmod u+x /a", /only octal modes/],
      ["ln /a /b", /hard links/],
      ["echo hi > /x", /uses the shell/],
      ["mkdir /a &&", /empty command/],
      ["setcap cap_bogus=+ep /app", /capability text polyarch does not model/],
      ["setcap cap_net_raw=+e /app", /capability text/], // effective without permitted: setcap refuses it
      ["setcap -r /a /b", /setcap -r with other than one file/],
    ] as const) {
      const c = classifyRun(cmd);
      assert.equal(c.native, false, cmd);
      assert.match(c.native ? "" : c.why, why, cmd);
    }
  });
});

describe("setcap, lists and shells", () => {
  it("reads capability text as cap_from_text does, and keeps each command's list operator", () => {
    const c = classifyRun(
      "/usr/sbin/setcap cap_net_bind_service=+ep /app/a cap_net_raw,cap_setuid=p /app/b; setcap -r /app/c",
    );
    assert.ok(c.native);
    const [a, r] = c.ops;
    assert.equal(a?.cmd, "/usr/sbin/setcap");
    assert.equal(a?.then, ";");
    assert.deepEqual(a?.op === "setcap" ? a.files : [], [
      { path: "/app/a", caps: { permitted: 1n << 10n, inheritable: 0n, effective: true } },
      { path: "/app/b", caps: { permitted: (1n << 13n) | (1n << 7n), inheritable: 0n, effective: false } },
    ]);
    assert.deepEqual(r?.op === "setcap" ? r.files : [], [{ path: "/app/c" }]);
    assert.equal(r?.then, undefined);
    assert.deepEqual(parseCaps("all=p cap_chown-p"), {
      permitted: ((1n << 41n) - 1n) & ~1n,
      inheritable: 0n,
      effective: false,
    });
    assert.deepEqual(parseCaps("cap_kill+eip"), {
      permitted: 1n << 5n,
      inheritable: 1n << 5n,
      effective: true,
    });
  });
  it("runs the shell form natively only under a POSIX shell with -c", () => {
    assert.ok(posixShell(["/bin/sh", "-c"]));
    assert.ok(posixShell(["/bin/bash", "-o", "pipefail", "-c"]));
    assert.ok(!posixShell(["/usr/bin/python3", "-c"]));
    assert.ok(!posixShell(["/bin/sh", "-c", "extra"]));
  });
});

describe("plans per platform", () => {
  it("the Go pattern: the build stage runs natively on the build CPU, the final stage needs no builder", () => {
    const text = [
      "FROM --platform=$BUILDPLATFORM golang:1.22 AS build",
      "ARG TARGETOS TARGETARCH",
      "WORKDIR /src",
      "COPY . .",
      "RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .",
      "FROM gcr.io/distroless/static",
      "RUN mkdir -p /app && chown 65532:65532 /app",
      "COPY --from=build /out/app /app/app",
      "USER 65532",
      'ENTRYPOINT ["/app/app"]',
    ].join("\n");
    const [amd, arm] = plan(text);
    for (const p of [amd!, arm!]) {
      assert.deepEqual(
        p.stages.map((s) => s.index),
        [0, 1],
      );
      const [build, final] = p.stages;
      assert.equal(build!.platform.architecture, "amd64", "FROM --platform=$BUILDPLATFORM");
      assert.equal(build!.emulated, false, "a RUN on the build platform needs no emulation");
      assert.equal(build!.args.get("TARGETARCH"), p.platform.architecture, "declared automatic args");
      assert.deepEqual(
        final!.steps.map((s) => s.mode),
        ["native", "native", "native", "native"],
      );
      assert.equal(final!.emulated, false);
      assert.deepEqual(final!.uses, [0]);
    }
    const lines = describeDockerfilePlan(parseDockerfile(text, "Dockerfile"), [arm!]);
    assert.ok(
      lines.some((l) => /delegated Dockerfile:5 RUN GOOS=\$TARGETOS .*uses the shell/.test(l)),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => /native {4}Dockerfile:7 RUN mkdir -p \/app && chown/.test(l)));
    assert.ok(lines.some((l) => /native {4}Dockerfile:8 COPY --from=build \/out\/app \/app\/app/.test(l)));
  });

  it("seed 003: ARG ARCH before FROM from a per-platform template", () => {
    const text = "ARG ARCH=amd64\nFROM ${ARCH}/alpine:3.20\nRUN apk add --no-cache ca-certificates\n";
    const plans = plan(text, {
      buildArgs: { ARCH: "{{arch}}{{variant}}" },
      platforms: [AMD64, ARM64, ARMV7],
    });
    assert.deepEqual(
      plans.map((p) => (p.stages[0]!.base as { ref: string }).ref),
      ["amd64/alpine:3.20", "arm64/alpine:3.20", "armv7/alpine:3.20"],
    );
    assert.deepEqual(
      plans.map((p) => p.stages[0]!.emulated),
      [false, true, true],
    );
    assert.equal(fillTemplate("{{platform}}", ARMV7), "linux/arm/v7");
    assert.throws(() => fillTemplate("{{cpu}}", ARMV7), /unknown template \{\{cpu\}\}/);
  });

  it("ARG scope: globals reach FROM only, a stage sees them once it declares them", () => {
    const text = [
      "ARG V=1",
      "ARG BASE=alpine:${V}",
      "FROM ${BASE} AS a",
      "ARG V",
      "ARG LOCAL=${V}-x",
      "FROM scratch AS b",
      "ARG V=2",
      "COPY --from=a / /",
    ].join("\n");
    const [p] = plan(text, { platforms: [AMD64] });
    const [a, b] = p!.stages;
    assert.deepEqual(a!.base, { kind: "image", ref: "alpine:1" });
    assert.equal(a!.args.get("V"), "1");
    assert.equal(a!.args.get("LOCAL"), "1-x");
    assert.equal(b!.args.get("V"), "2");
    const [q] = plan(text, { platforms: [AMD64], buildArgs: { V: "9" } });
    assert.deepEqual(
      q!.stages[0]!.base,
      { kind: "image", ref: "alpine:9" },
      "--build-arg wins over the default",
    );
    assert.equal(q!.stages[1]!.args.get("V"), "9");
  });

  it("only the stages the target needs, by name or index; --target picks one", () => {
    const text =
      "FROM alpine AS deps\nRUN apk add git\nFROM scratch AS unused\nCOPY x /x\nFROM scratch AS out\nCOPY --from=0 /etc/ssl /etc/ssl\n";
    assert.deepEqual(
      plan(text)[0]!.stages.map((s) => s.name),
      ["deps", "out"],
    );
    assert.deepEqual(
      plan(text, { target: "unused" })[0]!.stages.map((s) => s.name),
      ["unused"],
    );
    assert.throws(() => plan(text, { target: "nope" }), /has no stage named "nope"\n?/);
  });

  it("refuses an unset arg in FROM, a bad --platform and a later stage in --from", () => {
    assert.throws(() => plan("ARG IMG\nFROM ${IMG}\n"), /Dockerfile:2: FROM \$\{IMG\} expands to nothing/);
    assert.throws(
      () => plan("FROM --platform=linux/sparc a\n"),
      /Dockerfile:1: FROM --platform=linux\/sparc/,
    );
    assert.throws(
      () => plan("FROM a AS x\nCOPY --from=y / /\nFROM b AS y\n", { target: "x" }),
      /Dockerfile:2: --from=y names a stage that comes later/,
    );
    assert.throws(
      () => plan("FROM a\n", { buildArgs: { "bad-name": "x" } }),
      /build arg "bad-name" is not a valid name/,
    );
  });
});
