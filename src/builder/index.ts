import type { Index } from "../image/index.js";
import type { Platform } from "../platform/index.js";

/** Progress a builder reports; the CLI and the pipeline turn these into lines or a live view. */
export type BuildEvent =
  | { type: "resolve"; target: string; name: string }
  | { type: "compile-start"; platform: Platform }
  | { type: "compile-done"; platform: Platform; ms: number }
  | { type: "layer"; platform: Platform | "all"; digest: string; size: number; cached: boolean; what: string }
  | { type: "image"; platform: Platform; digest: string; size: number };

export interface BuildResult {
  index: Index;
  /** Short name of what was built (the Go binary's name). */
  name: string;
}

export interface Builder {
  build(opts: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void }): Promise<BuildResult>;
}
