import { PolyarchError } from "../errors.js";

/** An error a registry returned: HTTP status, OCI error codes from the body, method and (redacted) URL. */
export interface RegistryErrorData extends Record<string, unknown> {
  status: number;
  codes: string[];
  method: string;
  url: string;
  retryAfterMs?: number;
}

/** Largest error or token body read (reliability.md §1: 64 KiB). */
export const MAX_ERROR_BODY = 64 * 1024;

/** Drops query strings (upload session state, signed-URL tokens) and userinfo from URLs in messages. */
export function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    return `${url.origin}${url.pathname}${url.search ? "?…" : ""}`;
  } catch {
    return u.replace(/\?.*$/, "?…");
  }
}

export function parseErrorBody(text: string): { codes: string[]; message: string } {
  try {
    const j = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
    const errs = j.errors ?? [];
    return {
      codes: errs.map((e) => e.code ?? "UNKNOWN"),
      message: errs.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; "),
    };
  } catch {
    return { codes: [], message: text.trim().slice(0, 200) };
  }
}

const RETRYABLE_STATUS = new Set([408, 429, 499, 500, 502, 503, 504, 522]);
const RETRYABLE_CODES = new Set(["BLOB_UPLOAD_INVALID", "TOOMANYREQUESTS", "UNKNOWN", "UNAVAILABLE"]);

export function isRetryableStatus(status: number, codes: string[]): boolean {
  if (RETRYABLE_STATUS.has(status)) return true;
  return status >= 500 && codes.some((c) => RETRYABLE_CODES.has(c));
}

const RETRYABLE_NET = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ECONNABORTED",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
]);

/** Network failures worth another attempt; never an abort. */
export function isRetryableNetworkError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === "AbortError" || (e as NodeJS.ErrnoException).code === "ABORT_ERR") return false;
  const code = (e as NodeJS.ErrnoException).code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && RETRYABLE_NET.has(code);
}

export function registryError(
  data: RegistryErrorData,
  message: string,
  hint: string,
  cause?: unknown,
): PolyarchError {
  return new PolyarchError({ code: "E_REGISTRY", message, hint, data, cause });
}
