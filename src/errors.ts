/**
 * The one error type corral throws. `code` is stable and names exactly what happened (scripts
 * and the REST API match on it); `kind` follows from the code and says what sort of failure it
 * is, so the daemon's HTTP status and the CLI's exit code come from one table below instead of
 * per-code guesses. `field` names the spec field or argument at fault ("memory", "ports[0]"),
 * so a front end can point at its own input (the CLI prints the flag); `hint` tells the user
 * what to do next; `cause` keeps the underlying error for --debug.
 */

export type ErrorKind =
  /** The input is wrong: a spec field, an argument, a file the user named. */
  | "invalid-argument"
  /** The VM, snapshot, pool, image... does not exist. */
  | "not-found"
  /** Something of that name already exists. */
  | "exists"
  /** It exists but is in the wrong state for this (a stopped VM for exec). */
  | "invalid-state"
  /** Someone else holds it (a VM's lock, a host port, a snapshot's users). */
  | "conflict"
  /** This backend or host cannot do it at all. */
  | "unsupported"
  /** A host tool is missing: `corral setup` installs it. */
  | "tool-missing"
  | "timeout"
  /** The caller aborted (an AbortSignal, Ctrl-C). */
  | "cancelled"
  /** It was tried and failed: a VMM, a download, a guest, a registry. */
  | "failed"
  /** A bug in corral. */
  | "internal";

export const ERROR_KINDS: readonly ErrorKind[] = [
  "invalid-argument",
  "not-found",
  "exists",
  "invalid-state",
  "conflict",
  "unsupported",
  "tool-missing",
  "timeout",
  "cancelled",
  "failed",
  "internal",
];

/** Every stable code and its one kind. A new code goes here, nowhere else. */
const CODES = {
  INVALID_ARGUMENT: "invalid-argument",
  INVALID_SPEC: "invalid-argument",
  /** Cloud-init input (user-data, network config) corral cannot turn into a seed. */
  CLOUD_INIT: "invalid-argument",
  /** Input the ISO9660 writer refuses (names, sizes, dates). */
  ISO: "invalid-argument",

  VM_NOT_FOUND: "not-found",
  VM_EXISTS: "exists",
  VM_STATE: "invalid-state",
  VM_LOCKED: "conflict",
  VM_FAILED: "failed",
  /** The guest did not answer its agent in time. */
  NOT_READY: "timeout",

  TOOL_MISSING: "tool-missing",
  SETUP: "failed",

  IMAGE_NOT_FOUND: "not-found",
  IMAGE_BUILD: "failed",
  IMAGE_LAYER: "failed",
  DOWNLOAD: "failed",
  CHECKSUM_MISMATCH: "failed",
  ARCHIVE: "failed",
  REGISTRY: "failed",
  REGISTRY_AUTH: "failed",
  REGISTRY_NOT_FOUND: "not-found",

  SNAPSHOT_NOT_FOUND: "not-found",
  SNAPSHOT_EXISTS: "exists",
  /** Its files are missing, truncated or fail their SHA-256. */
  SNAPSHOT_DAMAGED: "failed",
  /** VMs restored from it still use its disks. */
  SNAPSHOT_IN_USE: "conflict",
  /** Saved by another VMM version or with a kernel no longer cached: this host cannot load it. */
  SNAPSHOT_INCOMPATIBLE: "unsupported",

  POOL_NOT_FOUND: "not-found",
  POOL_EXISTS: "exists",
  /** No ready member right now (refilling, or members fail to start). */
  POOL_EMPTY: "invalid-state",
  /** The daemon handed out a VM that is not a taken member of the pool. */
  POOL_MISMATCH: "failed",

  /** The VMM's control channel (QMP for QEMU, the API socket elsewhere). */
  VMM_CONTROL: "failed",
  AGENT: "failed",
  AGENT_PROTOCOL: "failed",
  VSOCK: "failed",
  NETWORK: "failed",
  PORT_IN_USE: "conflict",
  DAEMON: "failed",
  UNSUPPORTED: "unsupported",

  TIMEOUT: "timeout",
  CANCELLED: "cancelled",
  INTERNAL: "internal",
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof CODES;

/** The code -> kind table, for documentation and API clients. */
export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorKind>> = Object.freeze({ ...CODES });

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(CODES, value);
}

export function kindOf(code: ErrorCode): ErrorKind {
  return CODES[code] ?? "internal";
}

const HTTP_STATUS: Record<ErrorKind, number> = {
  "invalid-argument": 400,
  "not-found": 404,
  exists: 409,
  "invalid-state": 409,
  conflict: 409,
  unsupported: 501,
  "tool-missing": 503,
  timeout: 504,
  // nginx's "client closed request": the caller gave up, nothing failed on our side.
  cancelled: 499,
  failed: 500,
  internal: 500,
};

/** The REST API's status for an error of this kind. */
export function httpStatus(kind: ErrorKind): number {
  return HTTP_STATUS[kind] ?? 500;
}

/**
 * The CLI's exit status (README.md): 2 for bad input, 3 for a missing host tool, 130 (128 +
 * SIGINT) when cancelled, 1 for everything else. `run`/`exec` exit with the command's own.
 */
const EXIT_CODE: Record<ErrorKind, number> = {
  "invalid-argument": 2,
  "not-found": 1,
  exists: 1,
  "invalid-state": 1,
  conflict: 1,
  unsupported: 1,
  "tool-missing": 3,
  timeout: 1,
  cancelled: 130,
  failed: 1,
  internal: 1,
};

export function exitCode(kind: ErrorKind): number {
  return EXIT_CODE[kind] ?? 1;
}

export interface CorralErrorOptions {
  hint?: string;
  /** The spec field or argument at fault: "memory", "ports[0]", "cloudInit.users[1].name". */
  field?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

/** A CorralError on the wire (the daemon's error bodies, `--json` output). */
export interface CorralErrorJson {
  kind: ErrorKind;
  code: ErrorCode;
  message: string;
  hint: string | undefined;
  field: string | undefined;
  details: Record<string, unknown> | undefined;
}

/**
 * The brand that `instanceof` and isCorralError look for. A registered symbol, so a
 * CorralError from another copy of this package (two versions in one node_modules tree, or
 * ESM and a bundled copy) is still recognised, as undici does for its errors.
 */
const BRAND = Symbol.for("corral.error");

function branded(value: unknown): value is CorralError {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<symbol, unknown>)[BRAND] === true
  );
}

export class CorralError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: CorralErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CorralError";
    this.code = code;
    this.kind = kindOf(code);
    this.hint = options.hint;
    this.field = options.field;
    this.details = options.details;
  }

  get [BRAND](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): value is CorralError {
    return branded(value);
  }

  toJSON(): CorralErrorJson {
    return {
      kind: this.kind,
      code: this.code,
      message: this.message,
      hint: this.hint,
      field: this.field,
      details: this.details,
    };
  }
}

/** True for a CorralError (from any copy of corral), with `code` when given. */
export function isCorralError(err: unknown, code?: ErrorCode): err is CorralError {
  return branded(err) && (code === undefined || err.code === code);
}

/** An AbortSignal's DOMException, or Node's own AbortError (timers, events, streams). */
function isAbortError(err: unknown): err is Error {
  return err instanceof Error && err.name === "AbortError";
}

/** AbortSignal.timeout()'s reason. */
function isTimeoutError(err: unknown): err is Error {
  return err instanceof Error && err.name === "TimeoutError";
}

/**
 * Wraps anything thrown into a CorralError, keeping CorralErrors as they are. An abort
 * becomes CANCELLED and AbortSignal.timeout()'s TimeoutError becomes TIMEOUT, so callers see
 * one error type whatever aborted them.
 */
export function asCorralError(err: unknown, code: ErrorCode = "INTERNAL"): CorralError {
  if (branded(err)) return err;
  if (isAbortError(err)) return new CorralError("CANCELLED", "cancelled", { cause: err });
  if (isTimeoutError(err)) return new CorralError("TIMEOUT", err.message, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new CorralError(code, message, { cause: err });
}

/**
 * The error for an aborted `signal`: its reason when that is already a CorralError (the CLI
 * aborts with one that says "interrupted"), else CANCELLED (or TIMEOUT for
 * AbortSignal.timeout()) with the reason as the cause. Use instead of
 * `signal.throwIfAborted()`, which throws the bare reason, usually a DOMException.
 */
export function cancelled(signal?: AbortSignal): CorralError {
  const reason: unknown = signal?.reason;
  if (branded(reason)) return reason;
  if (isTimeoutError(reason)) return new CorralError("TIMEOUT", reason.message, { cause: reason });
  return new CorralError("CANCELLED", "cancelled", reason === undefined ? {} : { cause: reason });
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw cancelled(signal);
}
