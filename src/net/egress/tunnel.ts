/**
 * `CONNECT host:port` (HTTPS, wss, any TLS): policy, resolve, connect to the *chosen address*
 * (pinned: nothing re-resolves), `200 Connection Established`, then bytes both ways with
 * half-close. One decision entry, and for an allowed tunnel one close entry with its bytes.
 */
import type { IncomingMessage } from "node:http";
import { connect as netConnect } from "node:net";
import type { Duplex } from "node:stream";
import type { EgressDecision } from "./policy.js";
import type { ProxyContext } from "./proxy-context.js";
import { finishThenDestroy, rawRefusal } from "./refusal.js";
import { parseAuthority, type Target } from "./request-head.js";
import { errorText, pinnedLookup, statusForUpstreamError, TimeoutError } from "./upstream.js";

type ConnectBase = { kind: "connect"; method: string; host: string; port: number };

/** Serves a CONNECT whose head has arrived; `head` holds the bytes after it. */
export function connectTunnel(
  ctx: ProxyContext,
  req: IncomingMessage,
  conn: Duplex,
  head: Buffer,
): void {
  const started = Date.now();
  // Node's own timeout handling is detached from a CONNECT socket; the idle timeout stays set.
  conn.on("timeout", () => conn.destroy());
  const target = parseAuthority(req.url ?? "", undefined);
  if (typeof target === "string") {
    const reason = `CONNECT ${req.url ?? ""}: ${target}`;
    ctx.entry({
      kind: "connect",
      method: "CONNECT",
      host: "",
      port: 0,
      allowed: false,
      reason,
      status: 400,
    });
    rawRefusal(conn, 400, reason, false);
    return;
  }
  const base = {
    kind: "connect" as const,
    method: "CONNECT",
    host: target.host,
    port: target.port,
  };
  void ctx
    .decide(target)
    .then(({ decision, status }) => {
      if (!decision.allowed) {
        ctx.entry({ ...base, allowed: false, reason: decision.reason, status });
        rawRefusal(conn, status, decision.reason, status === 403);
        return;
      }
      const address = decision.address!;
      ctx.entry({
        ...base,
        allowed: true,
        reason: decision.reason,
        rule: decision.rule,
        address,
      });
      tunnel(ctx, conn, head, target, address, decision, started, base);
    })
    .catch(() => conn.destroy());
}

function tunnel(
  ctx: ProxyContext,
  conn: Duplex,
  head: Buffer,
  target: Target,
  address: string,
  decision: EgressDecision,
  started: number,
  base: ConnectBase,
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
    ctx.entry({
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
  const upstream = ctx.track(
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
    ctx.connectTimeoutMs,
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
      rawRefusal(conn, status, reason, false);
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
    upstream.setTimeout(ctx.idleTimeoutMs, () => {
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
