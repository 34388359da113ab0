/**
 * What the egress proxy logs (`EgressProxyOptions.onDecision`).
 *
 * Log semantics: exactly one `event: "decision"` entry per request or CONNECT whose request
 * line parsed, at decision time (`allowed`, `reason`, `rule`, `address`; for refusals the
 * `status` sent: 400, 403, 431, 502 `cannot resolve NAME`, 504). Every allowed decision is
 * later followed by exactly one `event: "close"` entry for the same exchange, with `status`
 * (200 for an established tunnel, the upstream's status for HTTP, 502 / 504 if the upstream
 * failed), `bytesUp` / `bytesDown` (body bytes for HTTP, tunnel bytes for CONNECT),
 * `durationMs` since the request head, and `reason` (how it ended). `url` (HTTP only) is
 * `http://host[:port]/path` without the query string, which often carries tokens. Bytes that
 * never form a request line (garbage, oversized or unfinished heads) are answered (400 / 431 /
 * 408) and closed without an entry. Exceptions thrown by `onDecision` are ignored.
 */

export interface EgressLogEntry {
  /** ISO 8601. */
  time: string;
  event: "decision" | "close";
  kind: "connect" | "http";
  method: string;
  /** As requested (IPv6 without brackets); "" when the target could not be parsed. */
  host: string;
  port: number;
  address?: string;
  allowed: boolean;
  reason: string;
  rule?: string;
  status?: number;
  bytesUp?: number;
  bytesDown?: number;
  durationMs?: number;
  url?: string;
}

/** An entry as the handlers give it: the time is added, `event` defaults to "decision". */
export type LogFields = Omit<EgressLogEntry, "time" | "event"> & {
  event?: EgressLogEntry["event"];
};
