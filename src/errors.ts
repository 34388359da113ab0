/**
 * The one error type corral throws. `code` is stable (scripts and the REST API match on it),
 * `hint` tells the user what to do next, `cause` keeps the underlying error for --debug.
 */
export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "INVALID_SPEC"
  | "VM_NOT_FOUND"
  | "VM_EXISTS"
  | "VM_STATE"
  | "VM_LOCKED"
  | "VM_FAILED"
  | "NOT_READY"
  | "TOOL_MISSING"
  | "IMAGE_NOT_FOUND"
  | "IMAGE_BUILD"
  | "IMAGE_LAYER"
  | "DOWNLOAD"
  | "CHECKSUM_MISMATCH"
  | "ARCHIVE"
  | "REGISTRY"
  | "REGISTRY_AUTH"
  | "REGISTRY_NOT_FOUND"
  | "QMP"
  | "AGENT_PROTOCOL"
  | "AGENT"
  | "VSOCK"
  | "UNSUPPORTED"
  | "PORT_IN_USE"
  | "EGRESS_DENIED"
  | "NETWORK"
  | "DAEMON"
  | "ISO"
  | "CLOUD_INIT"
  | "SNAPSHOT"
  | "POOL"
  | "SETUP"
  | "TIMEOUT"
  | "INTERNAL";

export interface CorralErrorOptions {
  hint?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class CorralError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: CorralErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CorralError";
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, details: this.details };
  }
}

export function isCorralError(err: unknown, code?: ErrorCode): err is CorralError {
  return err instanceof CorralError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a CorralError, keeping CorralErrors as they are. */
export function asCorralError(err: unknown, code: ErrorCode = "INTERNAL"): CorralError {
  if (err instanceof CorralError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CorralError(code, message, { cause: err });
}
