/**
 * Retry policy for registry traffic: transient failures (5xx, 429, connection resets, a body
 * cut short) are retried with exponential backoff; 4xx answers are final.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError, cancelled, throwIfCancelled } from "../../errors.js";

export interface RetryOptions {
  /** Attempts in all, first one included (default 4). */
  attempts?: number;
  /** First backoff delay, doubled on each retry (default 500 ms). */
  backoffMs?: number;
  /** Longest wait between attempts, Retry-After included (default 30 s). */
  maxBackoffMs?: number;
}

/** A failure worth another attempt. */
export class TransientError extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429;
}

/** Retry-After is either seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? undefined : Math.max(0, when - now);
}

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
]);

/** Network-level errors (undici's or the socket's) that a new connection may cure. */
export function isTransientNetworkError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
    e = e.cause;
  }
  return false;
}

export function backoffDelay(attempt: number, opts: RetryOptions, retryAfterMs?: number): number {
  const max = opts.maxBackoffMs ?? 30_000;
  const base = (opts.backoffMs ?? 500) * 2 ** attempt;
  return Math.min(max, Math.max(base, retryAfterMs ?? 0));
}

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = e.cause;
  }
  return undefined;
}

/** Final network failures (DNS, TLS) become REGISTRY errors with a next step. */
function asRegistryError(what: string, err: unknown): unknown {
  if (err instanceof CorralError || !(err instanceof Error)) return err;
  const code = errorCode(err) ?? "";
  const hint =
    code === "ENOTFOUND"
      ? "check the registry's host name"
      : /CERT|SSL|TLS|SELF_SIGNED|EPROTO/.test(code) || /certificate|ssl|tls/i.test(err.message)
        ? "the registry's TLS certificate is not trusted or it does not speak HTTPS; for a plain-HTTP registry you trust, use --insecure-registry"
        : undefined;
  return new CorralError("REGISTRY", `${what}: ${err.message}`, {
    cause: err,
    ...(hint === undefined ? {} : { hint }),
  });
}

/**
 * Runs `fn` until it succeeds, throws something other than a TransientError, or the attempts
 * run out; then a REGISTRY error names `what` and the last reason. An aborted `signal` ends it
 * at once with CANCELLED, whatever `fn` threw (undici and streams throw the bare reason), and
 * interrupts the wait between attempts.
 */
export async function withRetries<T>(
  what: string,
  opts: RetryOptions,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const attempts = Math.max(1, opts.attempts ?? 4);
  let last: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    throwIfCancelled(signal);
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted === true) throw cancelled(signal);
      const transient = err instanceof TransientError || isTransientNetworkError(err);
      if (!transient) throw asRegistryError(what, err);
      last = err;
      if (attempt + 1 < attempts) {
        const retryAfter = err instanceof TransientError ? err.retryAfterMs : undefined;
        await sleep(backoffDelay(attempt, opts, retryAfter), undefined, { signal }).catch(() => {
          throw cancelled(signal);
        });
      }
    }
  }
  const reason = last instanceof Error ? last.message : String(last);
  throw new CorralError("REGISTRY", `${what} failed after ${attempts} attempts: ${reason}`, {
    cause: last,
    hint: "check the network and the registry's status, then retry",
  });
}
