/**
 * HTTP to registries: connection reuse (keep-alive agents, _http.ts), the auth handshake, manual redirects,
 * capped error bodies, and retries at the level of whole operations.
 *
 * The handshake, per request:
 * 1. Send with the authorization cached for this registry and scope set, if any.
 * 2a. 2xx/3xx/4xx other than 401: done.
 * 2b. 401 with `Basic`: send again once with the stored username/password.
 * 2c. 401 with `Bearer realm,service`: ask the realm for a token for the scopes (push first —
 *     a few registries read only the first scope), cache it until it expires, send again once.
 * 3. A second 401 is an authentication error naming the registry and the scopes.
 *
 * Server-given URLs (issue 8; REG-16…18): an upload Location, a Link to the next page, a
 * redirect and a token realm are all checked in one place before anything is sent there:
 * 1. the registry's own scheme+host+port is trusted as the user named it;
 * 2. anything else must not downgrade an https registry to http;
 * 3. its host is resolved (an IP literal in any spelling is read as one) and every address is
 *    classified; unless the registry itself is on a loopback/private address, a non-public
 *    address is refused ("SSRF protection");
 * 4. the connection goes to the address that was checked, never to a second lookup;
 * 5. an Authorization header is only ever attached to the registry's own origin; the token
 *    request to the realm carries the user's credentials, never a registry token.
 *
 * Retries (reliability.md REG-01…04): an operation (a manifest GET, a whole blob upload) is
 * attempted at most `attempts` times on 408/429/5xx or a dropped connection, waiting ≈1 s
 * then ≈3 s (±10 %), or `Retry-After` when given (up to 60 s). Requests inside an operation are
 * never retried on their own, so retries do not multiply. An abort is never retried.
 */
import { lookup } from "node:dns/promises";
import { abortError, onAbort } from "../util/abort.js";
import { isIP } from "node:net";
import {
  BodySourceError,
  HttpClient,
  type HttpLike,
  type HttpResponse,
  type ResolvedAddress,
  type ResponseBody,
} from "./_http.js";
import { type AddressClass, classifyAddress } from "./_address.js";
import { PolyarchError } from "../errors.js";
import { parseChallenge } from "./_challenge.js";
import { anonymous, type Credential, type CredentialStore } from "./credentials.js";
import {
  isRetryableNetworkError,
  isRetryableStatus,
  MAX_ERROR_BODY,
  parseErrorBody,
  redactUrl,
  registryError,
  type RegistryErrorData,
} from "./errors.js";

export interface RetryPolicy {
  attempts: number;
  delaysMs: number[];
  jitter: number;
  maxRetryAfterMs: number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 3,
  delaysMs: [1000, 3000],
  jitter: 0.1,
  maxRetryAfterMs: 60_000,
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      // Through the shared fan-out: many waits on one signal add one listener, not one each.
      const off = signal
        ? onAbort(signal, () => {
            clearTimeout(t);
            reject(abortError(signal));
          })
        : () => {};
      const t = setTimeout(() => {
        off();
        resolve();
      }, ms);
    }),
};

export interface TransportOptions {
  credentials?: CredentialStore;
  /** Registries (host[:port]) that may be reached over plain HTTP besides localhost. */
  insecure?: readonly string[];
  retry?: Partial<RetryPolicy>;
  http?: HttpLike;
  userAgent?: string;
  /** Name resolution for server-given hosts (default: the system resolver); tests inject one. */
  resolve?: Resolver;
}

/** Every address a host name resolves to. */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

export type Body = Uint8Array | AsyncIterable<Uint8Array>;

export interface TransportRequest {
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";
  registry: string;
  /** A path like /v2/<repo>/manifests/<ref>, or an absolute URL (upload Location). */
  path: string;
  headers?: Record<string, string>;
  /** A factory, so the handshake can send the body again. */
  body?: () => Body;
  /** repository:<name>:<actions> scopes; push scopes first. */
  scopes: string[];
  /** Statuses that are not errors. */
  expect: number[];
  signal?: AbortSignal;
}

export interface TransportResponse {
  status: number;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
}

interface CachedAuth {
  header: string;
  expires: number;
}

export function header(res: TransportResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\./.test(h);
}

async function readCapped(body: ResponseBody, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      chunks.push(c.subarray(0, c.length - (n - limit)));
      body.destroy();
      break;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8").slice(0, limit);
}

const EXHAUSTED = Symbol("polyarch.retriesExhausted");

/** Marks an error as final: whoever sees it next does not retry it. */
export function asExhausted(e: unknown): unknown {
  if (e instanceof Error) Object.defineProperty(e, EXHAUSTED, { value: true });
  return e;
}

export function isExhausted(e: unknown): boolean {
  return e instanceof Error && (e as unknown as Record<symbol, unknown>)[EXHAUSTED] === true;
}

export class Transport {
  readonly #creds: CredentialStore;
  readonly #insecure: Set<string>;
  readonly retryPolicy: RetryPolicy;
  readonly #http: HttpLike;
  readonly #ua: string;
  readonly #auth = new Map<string, CachedAuth>();
  /** Token fetches in flight, so parallel requests that all meet a 401 share one token. */
  readonly #pending = new Map<string, Promise<CachedAuth>>();
  /** Registries that answered with Basic: their header, built once from the stored credentials. */
  readonly #basic = new Map<string, CachedAuth>();
  readonly #resolve: Resolver;
  /** Per registry: whether it is itself on a loopback or private address (local development). */
  readonly #local = new Map<string, Promise<boolean>>();

  constructor(opts: TransportOptions = {}) {
    this.#creds = opts.credentials ?? anonymous;
    this.#insecure = new Set(opts.insecure ?? []);
    this.retryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
    this.#http = opts.http ?? new HttpClient();
    this.#ua = opts.userAgent ?? "polyarch";
    this.#resolve = opts.resolve ?? systemResolver;
  }

  /** https://host, or http:// for loopback and registries named insecure. Docker Hub's API host is registry-1. */
  baseUrl(registry: string): string {
    const host = registry === "docker.io" ? "registry-1.docker.io" : registry;
    return `${isLoopback(host) || this.#insecure.has(registry) ? "http" : "https"}://${host}`;
  }

  /** Whether a registry is itself on a loopback or private address: then it may name such hosts. */
  #isLocal(registry: string): Promise<boolean> {
    let p = this.#local.get(registry);
    if (!p) {
      const host = new URL(this.baseUrl(registry)).hostname.replace(/^\[|\]$/g, "");
      p = (async () => {
        if (host === "localhost" || host.endsWith(".localhost")) return true;
        const literal = classifyAddress(host);
        if (literal) return literal !== "public";
        const addrs = await this.#resolve(host).catch(() => []);
        return addrs.length > 0 && addrs.every((a) => classifyAddress(a.address) !== "public");
      })();
      this.#local.set(registry, p);
    }
    return p;
  }

  /**
   * Checks a URL a server gave (steps 1–4 above) and returns the address to connect to, or
   * undefined for the registry's own origin.
   */
  async #checkServerUrl(registry: string, url: URL, what: string): Promise<ResolvedAddress | undefined> {
    const origin = new URL(this.baseUrl(registry));
    if (url.origin === origin.origin) return undefined;
    const shown = `${url.protocol}//${url.host}`;
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw this.#refuse(registry, `${what} with the scheme ${url.protocol}`, shown);
    }
    const host = url.hostname.replace(/^\[|\]$/g, "");
    let addrs: ResolvedAddress[];
    if (classifyAddress(host)) {
      addrs = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
    } else {
      try {
        addrs = await this.#resolve(host);
      } catch (e) {
        throw this.#networkError(registry, "GET", url.toString(), e);
      }
      if (addrs.length === 0) throw this.#refuse(registry, `${what} on a host with no address`, shown);
    }
    if (!(await this.#isLocal(registry))) {
      for (const a of addrs) {
        const cls: AddressClass = classifyAddress(a.address) ?? "reserved";
        if (cls !== "public") {
          throw new PolyarchError({
            code: "E_SSRF",
            message: `SSRF protection: ${registry} sent a ${what} on a ${cls} address (${shown}${a.address === host ? "" : ` → ${a.address}`})`,
            hint: "A public registry may only send clients to public hosts; the registry or something between is hostile or misconfigured.",
          });
        }
      }
    }
    if (origin.protocol === "https:" && url.protocol !== "https:") {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `${registry} sent a ${what} over plain HTTP (${shown})`,
        hint: "Refusing to leave HTTPS for plain HTTP; fix the registry's configuration.",
      });
    }
    return addrs[0];
  }

  #refuse(registry: string, what: string, shown: string): PolyarchError {
    return new PolyarchError({
      code: "E_SSRF",
      message: `${registry} sent a ${what} (${shown}); polyarch does not follow it`,
      hint: "The registry is misconfigured or hostile.",
    });
  }

  async close(): Promise<void> {
    this.#http.close();
  }

  #cacheKey(registry: string, scopes: string[]): string {
    return `${registry} ${[...scopes].sort().join(" ")}`;
  }

  /** True when a cache key (registry + scopes) grants every wanted scope (push includes pull). */
  #covers(key: string, registry: string, scopes: string[]): boolean {
    const grants = (have: string, want: string) => {
      const [ht, hn, ha] = have.split(":");
      const [wt, wn, wa] = want.split(":");
      return ht === wt && hn === wn && (wa ?? "").split(",").every((a) => (ha ?? "").split(",").includes(a));
    };
    const [reg, ...have] = key.split(" ");
    return reg === registry && scopes.every((w) => have.some((h) => grants(h, w)));
  }

  /** A cached authorization valid for these scopes: the same set, or one that grants more. */
  #cached(registry: string, scopes: string[]): CachedAuth | undefined {
    const now = Date.now();
    const exact = this.#auth.get(this.#cacheKey(registry, scopes));
    if (exact && exact.expires > now) return exact;
    for (const [key, auth] of this.#auth)
      if (auth.expires > now && this.#covers(key, registry, scopes)) return auth;
    return undefined;
  }

  /** A token fetch in flight whose scopes cover these: wait for it rather than start another. */
  async #pendingCovering(registry: string, scopes: string[]): Promise<CachedAuth | undefined> {
    for (const [key, p] of this.#pending)
      if (this.#covers(key, registry, scopes)) return p.catch(() => undefined);
    return undefined;
  }

  /** One request with the auth handshake; no retries (see `retry`). */
  async request(req: TransportRequest): Promise<TransportResponse> {
    let auth =
      this.#cached(req.registry, req.scopes) ?? (await this.#pendingCovering(req.registry, req.scopes));
    auth ??= this.#basic.get(req.registry);
    let res = await this.#send(req, auth?.header);
    if (res.status === 401) {
      // 2b/2c: learn the challenge, authenticate, send once more.
      const challenge = header(res, "www-authenticate");
      await res.body.dump();
      const fresh = await this.#authenticate(req, challenge, auth?.header);
      res = await this.#send(req, fresh.header);
      if (res.status === 401) {
        await res.body.dump();
        throw new PolyarchError({
          code: "E_AUTH",
          message: `${req.registry} refused the credentials for ${req.scopes.join(" ") || "access"} (401 unauthorized)`,
          hint: `Check the user and password or token: polyarch login ${req.registry}.`,
          data: { status: 401, registry: req.registry },
        });
      }
    }
    if (!req.expect.includes(res.status)) await this.#fail(req, res);
    return res;
  }

  async #basicAuth(registry: string): Promise<CachedAuth | undefined> {
    const c = await this.#creds.get(registry);
    if (!c || !("password" in c)) return undefined;
    return {
      header: `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`,
      expires: Number.POSITIVE_INFINITY,
    };
  }

  async #authenticate(
    req: TransportRequest,
    challengeHeader: string | undefined,
    sentWith?: string,
  ): Promise<CachedAuth> {
    // A request sent before a concurrent one's token arrived: that token (or its fetch) serves
    // it too, unless it is the very one just refused.
    const known =
      this.#cached(req.registry, req.scopes) ?? (await this.#pendingCovering(req.registry, req.scopes));
    if (known && known.header !== sentWith) return known;
    const ch = challengeHeader ? parseChallenge(challengeHeader) : undefined;
    const scope = req.scopes.join(" ") || "access";
    if (ch?.scheme === "basic") {
      const a = await this.#basicAuth(req.registry);
      if (!a) {
        throw new PolyarchError({
          code: "E_AUTH",
          message: `${req.registry} needs a user and password for ${scope}`,
          hint: `Log in first: polyarch login ${req.registry} -u <user> --password-stdin.`,
        });
      }
      this.#basic.set(req.registry, a);
      return a;
    }
    if (ch?.scheme !== "bearer" || !ch.params["realm"]) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `${req.registry} asked for authentication polyarch does not understand (${challengeHeader ?? "no WWW-Authenticate header"})`,
        hint: "polyarch speaks Basic and Bearer token auth, as docker does.",
      });
    }
    const key = this.#cacheKey(req.registry, req.scopes);
    const inflight = this.#pending.get(key);
    if (inflight) return inflight;
    const realm = ch.params["realm"];
    const service = ch.params["service"];
    // Registered before any await, so every concurrent 401 for these scopes shares this fetch.
    const p = (async () => this.#token(req, realm, service, await this.#creds.get(req.registry)))();
    this.#pending.set(key, p);
    try {
      const token = await p;
      this.#auth.set(key, token);
      return token;
    } finally {
      this.#pending.delete(key);
    }
  }

  /** The bearer token flow: GET realm?service&scope (basic credentials), or POST a refresh token. */
  async #token(
    req: TransportRequest,
    realm: string,
    service: string | undefined,
    cred: Credential | undefined,
  ): Promise<CachedAuth> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `${req.registry} sent a token realm that is not a URL: ${realm}`,
        hint: "The registry's auth configuration is wrong.",
      });
    }
    const address = await this.#checkServerUrl(req.registry, url, "token realm");
    if (service) url.searchParams.set("service", service);
    for (const s of req.scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = { "user-agent": this.#ua, accept: "application/json" };
    let method: "GET" | "POST" = "GET";
    let body: string | undefined;
    if (cred && "identityToken" in cred) {
      method = "POST";
      headers["content-type"] = "application/x-www-form-urlencoded";
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: cred.identityToken,
        client_id: "polyarch",
      });
      if (service) form.set("service", service);
      form.set("scope", req.scopes.join(" "));
      body = form.toString();
      url.search = "";
    } else if (cred) {
      headers["authorization"] =
        `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
    }
    let res: HttpResponse;
    try {
      res = await this.#http.request(url, {
        method,
        headers,
        ...(body ? { body: Buffer.from(body) } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        ...(address ? { address } : {}),
      });
    } catch (e) {
      throw this.#networkError(req.registry, method, url.toString(), e);
    }
    const text = await readCapped(res.body, MAX_ERROR_BODY + 1);
    if (res.statusCode === 200 && text.length > MAX_ERROR_BODY) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `the token service of ${req.registry} sent a token response over ${MAX_ERROR_BODY} bytes`,
        hint: "polyarch reads at most 64 KiB from a token service; the registry's auth service is misbehaving.",
      });
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `the token service of ${req.registry} refused ${cred ? "the credentials" : "anonymous access"} for ${req.scopes.join(" ")} (${res.statusCode})`,
        hint: cred
          ? `Check the user and password: polyarch login ${req.registry}.`
          : `This needs credentials: polyarch login ${req.registry}.`,
        data: { status: res.statusCode, registry: req.registry },
      });
    }
    if (res.statusCode !== 200) {
      throw registryError(
        { status: res.statusCode, codes: [], method, url: redactUrl(url.toString()) },
        `the token service of ${req.registry} answered ${res.statusCode}`,
        "Try again later; if it persists the registry's auth service is down.",
      );
    }
    let j: { token?: string; access_token?: string; expires_in?: number };
    try {
      j = JSON.parse(text) as typeof j;
    } catch {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `the token service of ${req.registry} sent a body that is not JSON`,
        hint: "The registry's auth service is misbehaving.",
      });
    }
    const token = j.token ?? j.access_token;
    if (!token)
      throw new PolyarchError({
        code: "E_AUTH",
        message: `the token service of ${req.registry} sent no token`,
        hint: "The registry's auth service is misbehaving.",
      });
    const ttl = Math.max(10, j.expires_in ?? 60);
    return { header: `Bearer ${token}`, expires: Date.now() + (ttl - 5) * 1000 };
  }

  async #send(req: TransportRequest, authorization: string | undefined): Promise<TransportResponse> {
    const origin = this.baseUrl(req.registry);
    let url: URL;
    try {
      url = new URL(req.path, origin);
    } catch {
      throw this.#refuse(req.registry, "URL that does not parse", redactUrl(req.path));
    }
    for (let hop = 0; ; hop++) {
      // Every hop is checked: the first may already be a server's URL (a Location, a Link).
      const address = await this.#checkServerUrl(req.registry, url, hop === 0 ? "URL" : "redirect");
      const headers: Record<string, string> = { "user-agent": this.#ua, ...req.headers };
      // Credentials only ever go to the registry's own origin (step 5).
      if (authorization && address === undefined && url.origin === new URL(origin).origin)
        headers["authorization"] = authorization;
      const body = req.body?.();
      let res: HttpResponse;
      try {
        res = await this.#http.request(url, {
          method: req.method,
          headers,
          ...(body ? { body } : {}),
          ...(req.signal ? { signal: req.signal } : {}),
          ...(address ? { address } : {}),
        });
      } catch (e) {
        // The body's source failed (a copy's source registry or layout): its error, not ours.
        if (e instanceof BodySourceError) throw asExhausted(e.source);
        throw this.#networkError(req.registry, req.method, url.toString(), e);
      }
      const location = res.headers["location"];
      const isRedirect =
        [301, 302, 303, 307, 308].includes(res.statusCode) && (req.method === "GET" || req.method === "HEAD");
      if (!isRedirect || typeof location !== "string" || req.expect.includes(res.statusCode)) {
        return { status: res.statusCode, url: url.toString(), headers: res.headers, body: res.body };
      }
      await res.body.dump();
      if (hop >= 5) {
        throw registryError(
          { status: res.statusCode, codes: [], method: req.method, url: redactUrl(url.toString()) },
          `too many redirects from ${req.registry}`,
          "The registry or its storage is misconfigured.",
        );
      }
      try {
        url = new URL(location, url);
      } catch {
        throw this.#refuse(req.registry, "redirect that does not parse", redactUrl(location));
      }
    }
  }

  #networkError(registry: string, method: string, url: string, e: unknown): PolyarchError {
    if (
      e instanceof Error &&
      (e.name === "AbortError" || (e as NodeJS.ErrnoException).code === "ABORT_ERR")
    ) {
      return new PolyarchError({
        code: "E_ABORTED",
        message: `${method} ${redactUrl(url)}: aborted`,
        cause: e,
      });
    }
    const code =
      (e as NodeJS.ErrnoException).code ??
      ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code ??
      "";
    let host = registry;
    try {
      const u = new URL(url);
      if (u.origin !== new URL(this.baseUrl(registry)).origin) host = u.host;
    } catch {
      // keep the registry's name
    }
    const foreign = host !== registry;
    const why =
      code === "ENOTFOUND" || code === "EAI_AGAIN"
        ? `unknown host ${host.replace(/:\d+$/, "")}`
        : code === "ECONNREFUSED"
          ? "connection refused"
          : (e as Error).message;
    return new PolyarchError({
      code: "E_REGISTRY",
      message: foreign
        ? `cannot reach ${host}, where ${registry} sent polyarch: ${why}`
        : `cannot reach ${registry}: ${why}`,
      hint: foreign
        ? `${registry} named that host (token service, storage or upload URL); it is down or unreachable from here.`
        : code === "ENOTFOUND"
          ? "Check the registry name in the reference."
          : "Check that the registry is up and reachable from here.",
      cause: e,
      data: {
        status: 0,
        codes: [],
        method,
        url: redactUrl(url),
        network: code,
      } satisfies RegistryErrorData & { network: string },
    });
  }

  async #fail(req: TransportRequest, res: TransportResponse): Promise<never> {
    const text = req.method === "HEAD" ? "" : await readCapped(res.body, MAX_ERROR_BODY);
    if (req.method === "HEAD") await res.body.dump();
    const { codes, message } = parseErrorBody(text);
    const retryAfter = header(res, "retry-after");
    const data: RegistryErrorData = {
      status: res.status,
      codes,
      method: req.method,
      url: redactUrl(res.url),
    };
    if (retryAfter !== undefined) {
      const secs = Number(retryAfter);
      const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(retryAfter) - Date.now();
      if (Number.isFinite(ms) && ms >= 0) data.retryAfterMs = ms;
    }
    const what = `${req.method} ${redactUrl(res.url)}`;
    const detail = message ? ` (${message})` : "";
    if (res.status === 403) {
      throw new PolyarchError({
        code: "E_AUTH",
        message: `${req.registry} denied ${req.scopes.join(" ") || "access"}: 403 forbidden${detail}`,
        hint: "The account lacks permission for this repository; check its access rights.",
        data,
      });
    }
    if (res.status === 404 && codes.includes("NAME_UNKNOWN")) {
      throw registryError(
        data,
        `repository not found on ${req.registry}${detail}`,
        "Check the repository name, or push to it first.",
      );
    }
    throw registryError(
      data,
      `${what} failed: ${res.status}${codes.length ? ` ${codes.join(", ")}` : ""}${detail}`,
      isRetryableStatus(res.status, codes)
        ? "The registry is overloaded or failing; try again later."
        : "Check the reference and the registry's response above.",
    );
  }

  /**
   * Runs an operation with bounded retries on transient failures (never on abort or 4xx).
   * Calls that share a `budget` share its attempts (a blob read and its range resumes).
   */
  async retry<T>(
    what: string,
    op: (attempt: number) => Promise<T>,
    signal?: AbortSignal,
    budget: { used: number } = { used: 0 },
  ): Promise<T> {
    const p = this.retryPolicy;
    for (let attempt = budget.used + 1; ; attempt++) {
      budget.used = attempt;
      try {
        return await op(attempt);
      } catch (e) {
        signal?.throwIfAborted();
        // An error that already used up a retry budget (an inner operation's, or a copy
        // source's) is never retried again: retries do not multiply across layers.
        if (isExhausted(e)) throw e;
        const data = e instanceof PolyarchError ? e.data : undefined;
        const status = typeof data?.["status"] === "number" ? data["status"] : undefined;
        const codes = Array.isArray(data?.["codes"]) ? (data["codes"] as string[]) : [];
        const retryAfterMs = typeof data?.["retryAfterMs"] === "number" ? data["retryAfterMs"] : undefined;
        const retryable =
          (e instanceof PolyarchError &&
            e.code === "E_REGISTRY" &&
            status !== undefined &&
            (status === 0 ? isRetryableNetworkError(e.cause) : isRetryableStatus(status, codes))) ||
          (!(e instanceof PolyarchError) && isRetryableNetworkError(e));
        if (!retryable || attempt >= p.attempts) {
          if (attempt > 1 && e instanceof PolyarchError)
            throw asExhausted(e.withContext(`${what} (after ${attempt} attempts)`));
          throw retryable ? asExhausted(e) : e;
        }
        const base = p.delaysMs[Math.min(attempt - 1, p.delaysMs.length - 1)] ?? 1000;
        const jittered = base * (1 + (Math.random() * 2 - 1) * p.jitter);
        const wait = retryAfterMs !== undefined ? Math.min(retryAfterMs, p.maxRetryAfterMs) : jittered;
        await p.sleep(wait, signal);
      }
    }
  }
}
