/**
 * Reaching an upstream for the egress proxy: resolve the name (with a timeout), let the policy
 * decide, pin the connection to the chosen address, and name a failure (502, or 504 for a
 * timeout).
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP, type LookupFunction } from "node:net";
import type { EgressDecision, EgressPolicy } from "./policy.js";
import type { Target } from "./request-head.js";

export class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function systemLookup(host: string): Promise<string[]> {
  const results = await dnsLookup(host, { all: true });
  return results.map((r) => r.address);
}

/** A lookup that can only answer `address`: nothing may re-resolve a pinned connection. */
export function pinnedLookup(address: string): LookupFunction {
  const family = isIP(address);
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/** `ECONNREFUSED`, `ECONNRESET`, ... or the message. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return String(err);
}

export function statusForUpstreamError(err: unknown): number {
  return err instanceof TimeoutError ? 504 : 502;
}

/** Precheck, resolve, decide. Returns the decision plus the status to send when refused. */
export async function resolveAndDecide(
  policy: EgressPolicy,
  lookup: (host: string) => Promise<string[]>,
  connectTimeoutMs: number,
  target: Target,
): Promise<{ decision: EgressDecision; status: number }> {
  const pre = policy.precheck(target.policyHost, target.port);
  if (pre.kind === "decided") {
    return { decision: pre.decision, status: pre.decision.allowed ? 200 : 403 };
  }
  let addresses: string[];
  try {
    addresses = await withTimeout(
      Promise.resolve().then(() => lookup(pre.name)),
      connectTimeoutMs,
      `timed out resolving ${pre.name}`,
    );
  } catch (err) {
    const timedOut = err instanceof TimeoutError;
    const reason = timedOut ? `timed out resolving ${pre.name}` : `cannot resolve ${pre.name}`;
    return { decision: { allowed: false, reason }, status: timedOut ? 504 : 502 };
  }
  const decision = policy.decide({
    host: target.policyHost,
    port: target.port,
    addresses: Array.isArray(addresses) ? addresses.filter((a) => typeof a === "string") : [],
  });
  return { decision, status: decision.allowed ? 200 : 403 };
}
