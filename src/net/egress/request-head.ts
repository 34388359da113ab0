/**
 * What the egress proxy reads from a request head: the target authority (`host:port`,
 * `[v6]:port`), the headers it forwards (hop-by-hop ones dropped) and the request target as
 * messages show it.
 */
import type { OutgoingHttpHeaders } from "node:http";

export interface Target {
  host: string;
  port: number;
  /** Host as it goes to the policy (IPv6 in brackets). */
  policyHost: string;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);
/** Never dropped because a Connection header lists them. */
const PROTECTED = new Set(["host", "content-length"]);

/** Parses `host[:port]` / `[v6][:port]`; port required when `defaultPort` is undefined. */
export function parseAuthority(text: string, defaultPort: number | undefined): Target | string {
  if (text.includes("@")) return "credentials (user@) in the authority are refused";
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return `"${text}" has an unclosed '['`;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return `"${text}" is not host:port`;
    portText = rest === "" ? undefined : rest.slice(1);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon >= 0 && text.indexOf(":") !== colon) return `"${text}": IPv6 addresses need brackets`;
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (host === "") return `"${text}" has no host`;
  let port: number;
  if (portText === undefined || (portText === "" && defaultPort !== undefined)) {
    if (defaultPort === undefined) return `"${text}" has no port (CONNECT needs host:port)`;
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) return `"${text}" has an invalid port`;
    port = Number(portText);
    if (port < 1 || port > 65535) return `"${text}" has a port out of range`;
  }
  const policyHost = host.includes(":") ? `[${host}]` : host;
  return { host, port, policyHost };
}

export function sameAuthority(a: Target, b: Target): boolean {
  const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");
  return norm(a.host) === norm(b.host) && a.port === b.port;
}

/** Headers to forward: hop-by-hop and Connection-listed ones dropped, order and case kept. */
export function forwardHeaders(raw: string[], drop: readonly string[] = []): OutgoingHttpHeaders {
  const listed = new Set<string>(drop);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== "connection") continue;
    for (const token of raw[i + 1]!.split(",")) {
      const name = token.trim().toLowerCase();
      if (name !== "" && !PROTECTED.has(name)) listed.add(name);
    }
  }
  const out: Record<string, string | string[]> = {};
  const keys = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    const key = keys.get(lower);
    if (key === undefined) {
      keys.set(lower, name);
      out[name] = value;
    } else {
      const prev = out[key]!;
      out[key] = Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
  }
  return out;
}

/** The request target for messages: the query string dropped. */
export function urlForLog(raw: string): string {
  return raw.replace(/[?#].*$/, "").slice(0, 200);
}
