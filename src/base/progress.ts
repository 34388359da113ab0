/**
 * Progress of long work (downloads, image builds, boots). The library reports through this
 * callback and never prints; the CLI decides how to render it.
 */
export interface ProgressEvent {
  /** Short machine-readable phase, e.g. "download", "extract", "build", "boot". */
  phase: string;
  /** Human-readable subject, e.g. a package name or file. */
  label: string;
  /** Units done so far (bytes for downloads). */
  current?: number;
  /** Total units when known. */
  total?: number;
  /** Set on the last event of a phase+label. */
  done?: boolean;
}

export type ProgressListener = (event: ProgressEvent) => void;

export const noProgress: ProgressListener = () => {};
