import { PolyarchError } from "../errors.js";
import { parseRegistryHost } from "../ref/index.js";
import { DockerConfigCredentials, Transport } from "../registry/index.js";
import type { CliIO } from "./_io.js";
import { dockerConfigFile, insecureRegistries } from "./_registry.js";

export interface LoginFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecure?: string[];
}

async function readStdin(io: CliIO): Promise<string> {
  if (!io.stdin)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--password-stdin needs standard input",
      hint: 'Pipe the password in: echo "$TOKEN" | polyarch login … --password-stdin.',
    });
  const chunks: Buffer[] = [];
  for await (const c of io.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** Checks the credentials against the registry (GET /v2/ with the handshake), then stores them like docker login. */
export async function runLogin(registryArg: string, flags: LoginFlags, io: CliIO): Promise<number> {
  const registry = parseRegistryHost(registryArg);
  if (!flags.username)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "login needs a user name",
      hint: "Pass -u <user> and the password with --password-stdin.",
    });
  if (flags.password !== undefined && flags.passwordStdin)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "--password and --password-stdin both give the password",
      hint: "Use --password-stdin, which keeps the secret out of the process list.",
    });
  const password = flags.passwordStdin ? await readStdin(io) : flags.password;
  if (!password)
    throw new PolyarchError({
      code: "E_INPUT",
      message: "login needs a password or token",
      hint: "Pipe it in with --password-stdin.",
    });
  if (flags.password !== undefined)
    io.stderr.write(
      "warning: --password shows the secret to other users of this machine; prefer --password-stdin\n",
    );
  const user = flags.username;
  const credentials = {
    get: async (r: string) => (r === registry ? { username: user, password } : undefined),
  };
  const transport = new Transport({ credentials, insecure: insecureRegistries(io.env, flags.insecure) });
  try {
    // A request that needs authentication on any protected registry: the registry's own check.
    const res = await transport.request({ method: "GET", registry, path: "/v2/", scopes: [], expect: [200] });
    await res.body.dump();
  } finally {
    await transport.close();
  }
  await new DockerConfigCredentials({ configFile: dockerConfigFile(io.env) }).store(registry, user, password);
  io.stderr.write(`Login Succeeded (${registry}, credentials stored in ${dockerConfigFile(io.env)})\n`);
  return 0;
}

export async function runLogout(registryArg: string, io: CliIO): Promise<number> {
  const registry = parseRegistryHost(registryArg);
  await new DockerConfigCredentials({ configFile: dockerConfigFile(io.env) }).erase(registry);
  io.stderr.write(`Removed credentials for ${registry}\n`);
  return 0;
}
