/**
 * Errors are data: a stable `code`, a one-sentence `message` naming the input, a `hint`
 * that says how to fix it, and the `cause`. The CLI prints message and hint, never a stack
 * unless asked.
 */
export type ErrorCode =
  | "E_PLATFORM"
  | "E_REFERENCE"
  | "E_TAG"
  | "E_DIGEST"
  | "E_MANIFEST"
  | "E_MEDIA_TYPE"
  | "E_LAYOUT"
  | "E_LOCKED"
  | "E_OUTPUT"
  | "E_NO_MAIN"
  | "E_GO"
  | "E_COMPILE"
  | "E_MODULE"
  | "E_BASE"
  | "E_TOOLCHAIN"
  | "E_INPUT"
  | "E_NOT_FOUND"
  | "E_SIZE"
  | "E_TAR"
  | "E_ABORTED"
  | "E_REGISTRY"
  | "E_GIT"
  | "E_CONFIG"
  | "E_STAGE"
  | "E_AUTH"
  | "E_SSRF"
  | "E_INTERNAL";

export interface ErrorInit {
  code: ErrorCode;
  message: string;
  hint?: string;
  cause?: unknown;
  data?: Record<string, unknown>;
}

export class PolyarchError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(init: ErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "PolyarchError";
    this.code = init.code;
    this.hint = init.hint;
    this.data = init.data;
  }

  /** A copy of this error whose message is prefixed with where it happened. */
  withContext(context: string): PolyarchError {
    const e = new PolyarchError({
      code: this.code,
      message: `${context}: ${this.message}`,
      hint: this.hint,
      cause: this.cause,
      data: this.data,
    });
    return e;
  }
}

export function isPolyarchError(e: unknown): e is PolyarchError {
  return e instanceof PolyarchError;
}

/** Adds context to any error at a boundary, keeping PolyarchError codes and hints. */
export function addContext(e: unknown, context: string): PolyarchError {
  if (e instanceof PolyarchError) return e.withContext(context);
  if (isAbort(e)) return new PolyarchError({ code: "E_ABORTED", message: `${context}: aborted`, cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  return new PolyarchError({ code: "E_INTERNAL", message: `${context}: ${msg}`, cause: e });
}

export function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === "AbortError" || (e as NodeJS.ErrnoException).code === "ABORT_ERR");
}
