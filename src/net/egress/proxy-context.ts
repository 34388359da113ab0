/**
 * What one EgressProxy lends its CONNECT (tunnel.ts) and plain HTTP (forward.ts) handlers:
 * its limits, its log, its set of upstream connections and its policy decision.
 */
import type { LogFields } from "./log-entry.js";
import type { EgressDecision } from "./policy.js";
import type { Target } from "./request-head.js";

/** An upstream connection or request the proxy closes on `close()`. */
export interface Trackable {
  destroy(): unknown;
  once(event: "close", fn: () => void): unknown;
}

export interface ProxyContext {
  /** For each of DNS resolution and the upstream TCP connect. */
  readonly connectTimeoutMs: number;
  /** A connection (guest or upstream) with no traffic for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Header fields per request (`EgressProxyOptions.maxHeaders`). */
  readonly maxHeaders: number;
  /** Logs one entry, stamped with the time; `event` defaults to "decision". Never throws. */
  entry(fields: LogFields): void;
  /** Registers an upstream so that `close()` ends it; forgotten once it closes. */
  track<T extends Trackable>(upstream: T): T;
  /** Precheck, resolve, decide. Returns the decision plus the status to send when refused. */
  decide(target: Target): Promise<{ decision: EgressDecision; status: number }>;
}
