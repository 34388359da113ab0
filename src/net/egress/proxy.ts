/**
 * The host side of a VM's egress: an HTTP forward proxy served over streams the guest opened
 * (guest-initiated vsock connections, each a `net.Socket` accepted on a unix socket).
 * Everything is checked against an EgressPolicy, deny by default (docs/egress.md).
 *
 * - `CONNECT host:port` (HTTPS, wss, any TLS): policy, resolve, connect to the *chosen
 *   address* (pinned: nothing re-resolves), `200 Connection Established`, then bytes both
 *   ways with half-close.
 * - Absolute-URI requests (`GET http://host[:port]/path`): each request on a kept-alive
 *   connection is checked on its own, forwarded to the pinned address with the original Host
 *   header; hop-by-hop headers are stripped, bodies streamed both ways.
 *
 * The guest is untrusted: header bytes and count are bounded, a connection must finish each
 * request head within `headersTimeoutMs`, and any connection idle for `idleTimeoutMs` is
 * closed. Nothing here throws: every failure becomes a response or a closed socket.
 *
 * For half-close to work, accept guest connections with `allowHalfOpen: true`.
 *
 * Log semantics (`onDecision`): exactly one `event: "decision"` entry per request or CONNECT
 * whose request line parsed, at decision time (`allowed`, `reason`, `rule`, `address`; for
 * refusals the `status` sent: 400, 403, 431, 502 `cannot resolve NAME`, 504). Every allowed
 * decision is later followed by exactly one `event: "close"` entry for the same exchange,
 * with `status` (200 for an established tunnel, the upstream's status for HTTP, 502 / 504 if
 * the upstream failed), `bytesUp` / `bytesDown` (body bytes for HTTP, tunnel bytes for
 * CONNECT), `durationMs` since the request head, and `reason` (how it ended). `url` (HTTP
 * only) is `http://host[:port]/path` without the query string, which often carries tokens.
 * Bytes that never form a request line (garbage, oversized or unfinished heads) are answered
 * (400 / 431 / 408) and closed without an entry. Exceptions thrown by `onDecision` are
 * ignored.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from "node:http";
import { isIP, type LookupFunction, connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { EgressDecision, EgressPolicy } from "./policy.js";

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

export interface EgressProxyOptions {
  policy: EgressPolicy;
  /** Resolves a name to addresses; default: the system resolver (honours /etc/hosts). */
  lookup?: (host: string) => Promise<string[]>;
  onDecision: (entry: EgressLogEntry) => void;
  /** For each of DNS resolution and the upstream TCP connect. Default 10 s. */
  connectTimeoutMs?: number;
  /** A connection (guest or upstream) with no traffic for this long is closed. Default 120 s. */
  idleTimeoutMs?: number;
  /** Time allowed for a request head, from the connection or the previous response. Default 30 s. */
  headersTimeoutMs?: number;
  /** Request line + headers. Default 16 KiB; more is answered 431. */
  maxHeaderBytes?: number;
  /** Header fields per request. Default 100; more is answered 431. */
  maxHeaders?: number;
  /** Guest connections open at once; more are closed at once. Default 256. */
  maxConnections?: number;
}

interface ConnState {
  active: number;
  headTimer: NodeJS.Timeout | undefined;
  tunnel: boolean;
}

interface Target {
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

const noop = () => {};

class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function systemLookup(host: string): Promise<string[]> {
  const results = await dnsLookup(host, { all: true });
  return results.map((r) => r.address);
}

/** A lookup that can only answer `address`: nothing may re-resolve a pinned connection. */
function pinnedLookup(address: string): LookupFunction {
  const family = isIP(address);
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/** `ECONNREFUSED`, `ECONNRESET`, ... or the message. */
function errorText(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return String(err);
}

/** Parses `host[:port]` / `[v6][:port]`; port required when `defaultPort` is undefined. */
function parseAuthority(text: string, defaultPort: number | undefined): Target | string {
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

function sameAuthority(a: Target, b: Target): boolean {
  const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");
  return norm(a.host) === norm(b.host) && a.port === b.port;
}

/** Headers to forward: hop-by-hop and Connection-listed ones dropped, order and case kept. */
function forwardHeaders(raw: string[], drop: readonly string[] = []): OutgoingHttpHeaders {
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

function refusalText(
  status: number,
  reason: string,
  denied: boolean,
): { head: string; body: string } {
  const body = `corral egress: ${reason.replace(/[\r\n]/g, " ")}\n`;
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n` +
    `X-Corral-Egress: ${denied ? "denied" : "error"}\r\n` +
    "Content-Type: text/plain\r\n" +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    "Connection: close\r\n\r\n";
  return { head, body };
}

/** Ends the writable side (flushing what is queued), then destroys. */
function finishThenDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream.writableFinished) {
    stream.destroy();
    return;
  }
  stream.once("finish", () => stream.destroy());
  stream.end();
}

function statusForUpstreamError(err: unknown): number {
  return err instanceof TimeoutError ? 504 : 502;
}

export class EgressProxy {
  readonly #policy: EgressPolicy;
  readonly #lookup: (host: string) => Promise<string[]>;
  readonly #log: (entry: EgressLogEntry) => void;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #headersTimeoutMs: number;
  readonly #maxHeaders: number;
  readonly #maxConnections: number;
  readonly #server: Server;
  readonly #conns = new Map<Duplex, ConnState>();
  readonly #upstreams = new Set<{ destroy(): unknown }>();
  #closed = false;

  constructor(options: EgressProxyOptions) {
    this.#policy = options.policy;
    this.#lookup = options.lookup ?? systemLookup;
    const onDecision = options.onDecision;
    this.#log = (entry) => {
      try {
        onDecision(entry);
      } catch {
        // The log callback is the caller's; its failures must not break a connection.
      }
    };
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.#maxHeaders = options.maxHeaders ?? 100;
    this.#maxConnections = options.maxConnections ?? 256;
    // Never listens: connections are handed over with emit("connection").
    this.#server = createServer({
      maxHeaderSize: options.maxHeaderBytes ?? 16 * 1024,
      insecureHTTPParser: false,
      requireHostHeader: true,
    });
    this.#server.timeout = this.#idleTimeoutMs;
    this.#server.keepAliveTimeout = this.#idleTimeoutMs;
    this.#server.maxHeadersCount = this.#maxHeaders;
    this.#server.on("request", (req, res) => this.#onRequest(req, res, false));
    this.#server.on("checkContinue", (req, res) => this.#onRequest(req, res, true));
    this.#server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onConnect(req, socket, head),
    );
    this.#server.on("upgrade", (req: IncomingMessage, socket: Duplex) =>
      this.#onUpgrade(req, socket),
    );
    this.#server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) =>
      this.#onClientError(err, socket),
    );
  }

  /** Open guest connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Serves one guest stream until it closes. Never throws. */
  handle(conn: Duplex): void {
    conn.on("error", noop);
    if (this.#closed || this.#conns.size >= this.#maxConnections) {
      conn.destroy();
      return;
    }
    const state: ConnState = { active: 0, headTimer: undefined, tunnel: false };
    this.#conns.set(conn, state);
    conn.once("close", () => {
      clearTimeout(state.headTimer);
      this.#conns.delete(conn);
    });
    this.#armHeadTimer(conn, state);
    try {
      this.#server.emit("connection", conn);
    } catch {
      conn.destroy();
    }
  }

  /** Closes every guest and upstream connection; later `handle` calls close theirs at once. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#conns.keys()) conn.destroy();
    for (const upstream of this.#upstreams) upstream.destroy();
    this.#conns.clear();
    this.#upstreams.clear();
  }

  // --- connection bookkeeping ----------------------------------------------------------------

  #armHeadTimer(conn: Duplex, state: ConnState): void {
    clearTimeout(state.headTimer);
    state.headTimer = setTimeout(() => {
      if (state.active > 0 || state.tunnel || conn.destroyed) return;
      this.#rawRefusal(conn, 408, "the request head did not arrive in time", false);
    }, this.#headersTimeoutMs);
    state.headTimer.unref?.();
  }

  #begin(conn: Duplex): ConnState | undefined {
    const state = this.#conns.get(conn);
    if (state === undefined) return undefined;
    clearTimeout(state.headTimer);
    state.headTimer = undefined;
    return state;
  }

  #track<T extends { destroy(): unknown; once(event: "close", fn: () => void): unknown }>(
    upstream: T,
  ): T {
    this.#upstreams.add(upstream);
    upstream.once("close", () => this.#upstreams.delete(upstream));
    return upstream;
  }

  #rawRefusal(conn: Duplex, status: number, reason: string, denied: boolean): void {
    if (conn.destroyed) return;
    // A peer that never reads the refusal must not keep the socket open.
    conn.on("timeout", () => conn.destroy());
    const { head, body } = refusalText(status, reason, denied);
    try {
      if (conn.writable) conn.write(head + body);
    } catch {
      // fall through to closing
    }
    finishThenDestroy(conn);
  }

  #onClientError(err: NodeJS.ErrnoException, conn: Duplex): void {
    const state = this.#conns.get(conn);
    if (state !== undefined && state.active > 0) {
      // A response is in progress: raw bytes would corrupt it.
      conn.destroy();
      return;
    }
    if (err.code === "ECONNRESET" || !conn.writable) {
      conn.destroy();
      return;
    }
    const status =
      err.code === "HPE_HEADER_OVERFLOW"
        ? 431
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? 408
          : 400;
    const reason =
      status === 431
        ? "the request head is too large"
        : `malformed request (${err.code ?? "parse error"})`;
    this.#rawRefusal(conn, status, reason, false);
  }

  #entry(
    fields: Omit<EgressLogEntry, "time" | "event"> & { event?: EgressLogEntry["event"] },
  ): void {
    this.#log({ time: new Date().toISOString(), event: "decision", ...fields });
  }

  /** Precheck, resolve, decide. Returns the decision plus the status to send when refused. */
  async #resolveAndDecide(target: Target): Promise<{ decision: EgressDecision; status: number }> {
    const pre = this.#policy.precheck(target.policyHost, target.port);
    if (pre.kind === "decided") {
      return { decision: pre.decision, status: pre.decision.allowed ? 200 : 403 };
    }
    let addresses: string[];
    try {
      addresses = await withTimeout(
        Promise.resolve().then(() => this.#lookup(pre.name)),
        this.#connectTimeoutMs,
        `timed out resolving ${pre.name}`,
      );
    } catch (err) {
      const timedOut = err instanceof TimeoutError;
      const reason = timedOut ? `timed out resolving ${pre.name}` : `cannot resolve ${pre.name}`;
      return { decision: { allowed: false, reason }, status: timedOut ? 504 : 502 };
    }
    const decision = this.#policy.decide({
      host: target.policyHost,
      port: target.port,
      addresses: Array.isArray(addresses) ? addresses.filter((a) => typeof a === "string") : [],
    });
    return { decision, status: decision.allowed ? 200 : 403 };
  }

  // --- CONNECT -------------------------------------------------------------------------------

  #onConnect(req: IncomingMessage, conn: Duplex, head: Buffer): void {
    const state = this.#begin(conn);
    if (state !== undefined) state.tunnel = true;
    const started = Date.now();
    // Node's own timeout handling is detached from a CONNECT socket; the idle timeout stays set.
    conn.on("timeout", () => conn.destroy());
    const target = parseAuthority(req.url ?? "", undefined);
    if (typeof target === "string") {
      const reason = `CONNECT ${req.url ?? ""}: ${target}`;
      this.#entry({
        kind: "connect",
        method: "CONNECT",
        host: "",
        port: 0,
        allowed: false,
        reason,
        status: 400,
      });
      this.#rawRefusal(conn, 400, reason, false);
      return;
    }
    const base = {
      kind: "connect" as const,
      method: "CONNECT",
      host: target.host,
      port: target.port,
    };
    void this.#resolveAndDecide(target)
      .then(({ decision, status }) => {
        if (!decision.allowed) {
          this.#entry({ ...base, allowed: false, reason: decision.reason, status });
          this.#rawRefusal(conn, status, decision.reason, status === 403);
          return;
        }
        const address = decision.address!;
        this.#entry({
          ...base,
          allowed: true,
          reason: decision.reason,
          rule: decision.rule,
          address,
        });
        this.#tunnel(conn, head, target, address, decision, started, base);
      })
      .catch(() => conn.destroy());
  }

  #tunnel(
    conn: Duplex,
    head: Buffer,
    target: Target,
    address: string,
    decision: EgressDecision,
    started: number,
    base: { kind: "connect"; method: string; host: string; port: number },
  ): void {
    let bytesUp = 0;
    let bytesDown = 0;
    let status: number | undefined = 200;
    let reason = "tunnel closed";
    let established = false;
    let logged = false;
    const finish = () => {
      if (logged) return;
      logged = true;
      this.#entry({
        ...base,
        event: "close",
        allowed: true,
        address,
        rule: decision.rule,
        reason,
        status,
        bytesUp,
        bytesDown,
        durationMs: Date.now() - started,
      });
    };
    if (conn.destroyed) {
      reason = "the client closed before the upstream connection";
      status = undefined;
      finish();
      return;
    }
    const upstream = this.#track(
      netConnect({
        host: address,
        port: target.port,
        allowHalfOpen: true,
        lookup: pinnedLookup(address),
      }),
    );
    upstream.setNoDelay(true);
    const connectTimer = setTimeout(
      () => upstream.destroy(new TimeoutError(`timed out connecting to ${address}:${target.port}`)),
      this.#connectTimeoutMs,
    );
    const onEarlyClose = () => {
      reason = "the client closed before the upstream connection";
      status = undefined;
      upstream.destroy();
    };
    conn.once("close", onEarlyClose);
    upstream.once("error", (err) => {
      clearTimeout(connectTimer);
      if (!established) {
        conn.off("close", onEarlyClose);
        status = statusForUpstreamError(err);
        reason = `${base.host}:${target.port}: cannot connect to ${address}:${target.port} (${errorText(err)})`;
        this.#rawRefusal(conn, status, reason, false);
      } else {
        reason = `upstream error (${errorText(err)})`;
        conn.destroy();
      }
    });
    upstream.once("close", () => {
      clearTimeout(connectTimer);
      if (established) finishThenDestroy(conn);
      if (conn.destroyed) finish();
      else conn.once("close", finish);
    });
    upstream.once("connect", () => {
      clearTimeout(connectTimer);
      conn.off("close", onEarlyClose);
      if (conn.destroyed) {
        upstream.destroy();
        return;
      }
      established = true;
      upstream.setTimeout(this.#idleTimeoutMs, () => {
        reason = "idle timeout";
        upstream.destroy();
        conn.destroy();
      });
      conn.on("timeout", () => {
        reason = "idle timeout";
        upstream.destroy();
      });
      conn.on("error", (err: Error) => {
        reason = `client error (${errorText(err)})`;
        upstream.destroy();
      });
      conn.once("close", () => {
        if (!upstream.destroyed) finishThenDestroy(upstream);
      });
      conn.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) {
        bytesUp += head.length;
        upstream.write(head);
      }
      conn.pipe(upstream);
      upstream.pipe(conn);
      conn.on("data", (chunk: Buffer) => {
        bytesUp += chunk.length;
      });
      upstream.on("data", (chunk: Buffer) => {
        bytesDown += chunk.length;
      });
    });
  }

  #onUpgrade(req: IncomingMessage, conn: Duplex): void {
    this.#begin(conn);
    const rawUrl = req.url ?? "";
    const m = /^http:\/\/([^/?#]*)/i.exec(rawUrl);
    const target = m === null ? undefined : parseAuthority(m[1]!, 80);
    const { host, port } = typeof target === "object" ? target : { host: "", port: 0 };
    const reason = `${req.method ?? "?"} ${urlForLog(rawUrl)}: Upgrade (websocket) over plain-HTTP proxying is refused; use CONNECT (wss:// or ws:// through HTTPS_PROXY)`;
    this.#entry({
      kind: "http",
      method: req.method ?? "",
      host,
      port,
      allowed: false,
      reason,
      status: 400,
    });
    this.#rawRefusal(conn, 400, reason, false);
  }

  // --- absolute-URI requests -----------------------------------------------------------------

  #onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const conn = req.socket as Duplex;
    const state = this.#begin(conn);
    if (state !== undefined) state.active++;
    res.once("close", () => {
      if (state === undefined) return;
      state.active--;
      if (state.active === 0 && !conn.destroyed) this.#armHeadTimer(conn, state);
    });
    res.on("error", noop);
    req.on("error", noop);
    this.#forward(req, res, expectContinue).catch(() => {
      res.destroy();
    });
  }

  #refuse(res: ServerResponse, status: number, reason: string, denied: boolean): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const { body } = refusalText(status, reason, denied);
    res.writeHead(status, {
      "X-Corral-Egress": denied ? "denied" : "error",
      "Content-Type": "text/plain",
      "Content-Length": Buffer.byteLength(body),
      Connection: "close",
    });
    res.end(body);
  }

  async #forward(
    req: IncomingMessage,
    res: ServerResponse,
    expectContinue: boolean,
  ): Promise<void> {
    const started = Date.now();
    const method = req.method ?? "";
    const rawUrl = req.url ?? "";
    const refuse = (status: number, reason: string, host = "", port = 0, url?: string) => {
      this.#entry({ kind: "http", method, host, port, allowed: false, reason, status, url });
      this.#refuse(res, status, reason, status === 403);
    };
    if (rawUrl.startsWith("/") || rawUrl === "*") {
      return refuse(
        400,
        `${method} ${rawUrl}: a proxy request needs an absolute URI (http://host/path)`,
      );
    }
    if (/^https:\/\//i.test(rawUrl)) {
      return refuse(
        400,
        `${method} ${urlForLog(rawUrl)}: https:// URIs are not proxied as plain HTTP; use CONNECT (HTTPS_PROXY)`,
      );
    }
    const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(rawUrl);
    if (m === null)
      return refuse(400, `${method} ${urlForLog(rawUrl)}: only http:// URIs are proxied`);
    const target = parseAuthority(m[1]!, 80);
    if (typeof target === "string") return refuse(400, `${method} ${urlForLog(rawUrl)}: ${target}`);
    let path = m[2]! === "" ? "/" : m[2]!;
    if (path.startsWith("?")) path = `/${path}`;
    const authority = m[1]!;
    const url = `http://${authority}${path.replace(/\?.*$/, "")}`;
    const { host, port } = target;
    const deny = (status: number, reason: string) => refuse(status, reason, host, port, url);

    const pairs = req.rawHeaders.length / 2;
    if (pairs >= this.#maxHeaders)
      return deny(431, `${method} ${url}: more than ${this.#maxHeaders - 1} header fields`);
    const hostHeaders: string[] = [];
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() === "host") hostHeaders.push(req.rawHeaders[i + 1]!);
    }
    if (hostHeaders.length > 1) return deny(400, `${method} ${url}: more than one Host header`);
    if (hostHeaders.length === 1) {
      const given = parseAuthority(hostHeaders[0]!, 80);
      if (typeof given === "string" || !sameAuthority(given, target)) {
        return deny(
          403,
          `${method} ${url}: the Host header "${hostHeaders[0]}" does not match the URI authority "${authority}"`,
        );
      }
    }
    if (req.headers.upgrade !== undefined) {
      return deny(
        400,
        `${method} ${url}: Upgrade (websocket) over plain-HTTP proxying is refused; use CONNECT`,
      );
    }
    const te = req.headers["transfer-encoding"];
    if (te !== undefined && te.trim().toLowerCase() !== "chunked") {
      return deny(
        400,
        `${method} ${url}: Transfer-Encoding "${te}" is not supported (only chunked)`,
      );
    }

    const { decision, status } = await this.#resolveAndDecide(target);
    if (!decision.allowed) return deny(status, decision.reason);
    const address = decision.address!;
    const base = { kind: "http" as const, method, host, port, address, rule: decision.rule, url };
    this.#entry({ ...base, allowed: true, reason: decision.reason });

    let bytesUp = 0;
    let bytesDown = 0;
    let logged = false;
    const close = (closeStatus: number | undefined, reason: string) => {
      if (logged) return;
      logged = true;
      this.#entry({
        ...base,
        event: "close",
        allowed: true,
        reason,
        status: closeStatus,
        bytesUp,
        bytesDown,
        durationMs: Date.now() - started,
      });
    };
    if (res.destroyed || req.socket.destroyed) {
      close(undefined, "the client closed before the upstream connection");
      return;
    }

    const headers = forwardHeaders(req.rawHeaders, expectContinue ? ["expect"] : []);
    if (hostHeaders.length === 0) headers.Host = authority;
    if (te !== undefined) headers["Transfer-Encoding"] = "chunked";
    const upstreamReq = this.#track(
      httpRequest({
        host: address,
        port,
        method,
        path,
        headers,
        setHost: false,
        agent: false,
        lookup: pinnedLookup(address),
        insecureHTTPParser: false,
      }),
    );
    upstreamReq.on("error", noop);
    let connectTimer: NodeJS.Timeout | undefined = setTimeout(
      () => upstreamReq.destroy(new TimeoutError(`timed out connecting to ${address}:${port}`)),
      this.#connectTimeoutMs,
    );
    upstreamReq.once("socket", (socket: Socket) => {
      socket.once("connect", () => {
        clearTimeout(connectTimer);
        connectTimer = undefined;
      });
    });
    upstreamReq.setTimeout(this.#idleTimeoutMs, () =>
      upstreamReq.destroy(new TimeoutError(`the upstream ${address}:${port} was idle too long`)),
    );
    upstreamReq.once("close", () => clearTimeout(connectTimer));
    upstreamReq.once("error", (err) => {
      clearTimeout(connectTimer);
      const failStatus = statusForUpstreamError(err);
      const reason = !res.headersSent
        ? `${host}:${port}: upstream ${address}:${port} failed (${errorText(err)})`
        : `upstream error mid-response (${errorText(err)})`;
      if (!res.headersSent) {
        this.#refuse(res, failStatus, reason, false);
        close(failStatus, reason);
      } else {
        res.destroy();
        close(res.statusCode, reason);
      }
    });
    res.once("close", () => {
      if (!res.writableFinished) {
        upstreamReq.destroy();
        close(res.headersSent ? res.statusCode : undefined, "the client closed the connection");
      }
    });

    upstreamReq.once("response", (upstreamRes: IncomingMessage) => {
      upstreamRes.on("error", noop);
      const code = upstreamRes.statusCode ?? 502;
      try {
        res.writeHead(code, upstreamRes.statusMessage, forwardHeaders(upstreamRes.rawHeaders));
      } catch (err) {
        upstreamReq.destroy();
        const reason = `${host}:${port}: invalid upstream response (${errorText(err)})`;
        this.#refuse(res, 502, reason, false);
        close(502, reason);
        return;
      }
      upstreamRes.on("data", (chunk: Buffer) => {
        bytesDown += chunk.length;
      });
      const upstreamGone = () => {
        close(code, "the upstream closed mid-response");
        res.destroy();
      };
      upstreamRes.once("aborted", upstreamGone);
      upstreamRes.once("error", upstreamGone);
      upstreamRes.once("end", () => {
        res.once("finish", () => close(code, "completed"));
      });
      upstreamRes.pipe(res);
    });

    if (expectContinue) res.writeContinue();
    req.on("data", (chunk: Buffer) => {
      bytesUp += chunk.length;
    });
    req.pipe(upstreamReq);
  }
}

/** The request target for messages: the query string dropped. */
function urlForLog(raw: string): string {
  return raw.replace(/[?#].*$/, "").slice(0, 200);
}

/**
 * One stream, one proxy: for callers that hand over connections one at a time. Prefer one
 * EgressProxy per VM (its `close()` ends every connection).
 */
export function serveEgressConnection(conn: Duplex, options: EgressProxyOptions): EgressProxy {
  const proxy = new EgressProxy(options);
  proxy.handle(conn);
  return proxy;
}
