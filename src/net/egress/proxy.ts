/**
 * The host side of a VM's egress: an HTTP forward proxy served over streams the guest opened
 * (guest-initiated vsock connections, each a `net.Socket` accepted on a unix socket).
 * Everything is checked against an EgressPolicy, deny by default (docs/egress.md).
 *
 * - `CONNECT host:port` (HTTPS, wss, any TLS): policy, resolve, connect to the *chosen
 *   address* (pinned: nothing re-resolves), `200 Connection Established`, then bytes both
 *   ways with half-close (tunnel.ts).
 * - Absolute-URI requests (`GET http://host[:port]/path`): each request on a kept-alive
 *   connection is checked on its own, forwarded to the pinned address with the original Host
 *   header; hop-by-hop headers are stripped, bodies streamed both ways (forward.ts).
 *
 * The guest is untrusted: header bytes and count are bounded, a connection must finish each
 * request head within `headersTimeoutMs`, and any connection idle for `idleTimeoutMs` is
 * closed. Nothing here throws: every failure becomes a response or a closed socket.
 *
 * For half-close to work, accept guest connections with `allowHalfOpen: true`.
 *
 * Log semantics (`onDecision`): see log-entry.ts.
 *
 * This file is the proxy itself: options, the guest connections and their bookkeeping (head
 * timers, limits, closing everything), and the parser's errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { forward, refuseUpgrade } from "./forward.js";
import type { EgressLogEntry } from "./log-entry.js";
import type { EgressPolicy } from "./policy.js";
import type { ProxyContext, Trackable } from "./proxy-context.js";
import { rawRefusal } from "./refusal.js";
import { connectTunnel } from "./tunnel.js";
import { resolveAndDecide, systemLookup } from "./upstream.js";

export type { EgressLogEntry } from "./log-entry.js";

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

const noop = () => {};

export class EgressProxy {
  readonly #log: (entry: EgressLogEntry) => void;
  readonly #headersTimeoutMs: number;
  readonly #maxConnections: number;
  readonly #ctx: ProxyContext;
  readonly #server: Server;
  readonly #conns = new Map<Duplex, ConnState>();
  readonly #upstreams = new Set<{ destroy(): unknown }>();
  #closed = false;

  constructor(options: EgressProxyOptions) {
    const policy = options.policy;
    const lookup = options.lookup ?? systemLookup;
    const onDecision = options.onDecision;
    this.#log = (entry) => {
      try {
        onDecision(entry);
      } catch {
        // The log callback is the caller's; its failures must not break a connection.
      }
    };
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    const maxHeaders = options.maxHeaders ?? 100;
    this.#maxConnections = options.maxConnections ?? 256;
    this.#ctx = {
      connectTimeoutMs,
      idleTimeoutMs,
      maxHeaders,
      entry: (fields) =>
        this.#log({ time: new Date().toISOString(), event: "decision", ...fields }),
      track: <T extends Trackable>(upstream: T): T => this.#track(upstream),
      decide: (target) => resolveAndDecide(policy, lookup, connectTimeoutMs, target),
    };
    // Never listens: connections are handed over with emit("connection").
    this.#server = createServer({
      maxHeaderSize: options.maxHeaderBytes ?? 16 * 1024,
      insecureHTTPParser: false,
      requireHostHeader: true,
    });
    this.#server.timeout = idleTimeoutMs;
    this.#server.keepAliveTimeout = idleTimeoutMs;
    this.#server.maxHeadersCount = maxHeaders;
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
      rawRefusal(conn, 408, "the request head did not arrive in time", false);
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

  #track<T extends Trackable>(upstream: T): T {
    this.#upstreams.add(upstream);
    upstream.once("close", () => this.#upstreams.delete(upstream));
    return upstream;
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
    rawRefusal(conn, status, reason, false);
  }

  // --- the three kinds of request head -------------------------------------------------------

  #onConnect(req: IncomingMessage, conn: Duplex, head: Buffer): void {
    const state = this.#begin(conn);
    if (state !== undefined) state.tunnel = true;
    connectTunnel(this.#ctx, req, conn, head);
  }

  #onUpgrade(req: IncomingMessage, conn: Duplex): void {
    this.#begin(conn);
    refuseUpgrade(this.#ctx, req, conn);
  }

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
    forward(this.#ctx, req, res, expectContinue).catch(() => {
      res.destroy();
    });
  }
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
