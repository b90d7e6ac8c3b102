import type { Index } from "../image/index.js";
import type { Platform } from "../platform/index.js";

/**
 * Progress a builder reports, the same for every builder; the CLI and the pipeline turn these
 * into lines or a live view. A step is the unit of work per platform: "compile" for Go, an
 * instruction for a Dockerfile; `where` says who ran it ("native", a builder's name).
 */
export type BuildEvent =
  | { type: "resolve"; target: string; name: string }
  /** Something the user should know before it costs them (a step under emulation). */
  | { type: "warning"; message: string }
  /** A line for the summary (how the steps ran). */
  | { type: "note"; message: string }
  | { type: "step-start"; platform: Platform; step: string }
  | { type: "step-done"; platform: Platform; step: string; ms: number; where?: string }
  | {
      type: "layer";
      platform: Platform | "all";
      digest: string;
      size: number;
      cached: boolean;
      what: string;
      /** The compressed blob on disk, when the builder has one: a push may start with it. */
      file?: string;
    }
  | { type: "image"; platform: Platform; digest: string; size: number };

export interface BuildResult {
  index: Index;
  /** Short name of what was built (the Go binary's name). */
  name: string;
}

export interface Builder {
  build(opts: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void }): Promise<BuildResult>;
}

/** What an image is given besides its files: declared once for every builder and command. */
export interface ImageSettings {
  env: string[];
  exposedPorts: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  user?: string;
  workingDir?: string;
  /** Replaces the builder's default entrypoint. */
  entrypoint?: string[];
  cmd?: string[];
}
