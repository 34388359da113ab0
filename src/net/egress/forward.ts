/**
 * Absolute-URI requests (`GET http://host[:port]/path`): each request on a kept-alive
 * connection is checked on its own, forwarded to the pinned address with the original Host
 * header; hop-by-hop headers are stripped, bodies streamed both ways. Upgrade requests are
 * refused (websockets go through CONNECT).
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { ProxyContext } from "./proxy-context.js";
import { rawRefusal, refuseResponse } from "./refusal.js";
import { forwardHeaders, parseAuthority, sameAuthority, urlForLog } from "./request-head.js";
import { errorText, pinnedLookup, statusForUpstreamError, TimeoutError } from "./upstream.js";

const noop = () => {};

/** Refuses an Upgrade request (its head has arrived on `conn`) with a raw 400. */
export function refuseUpgrade(ctx: ProxyContext, req: IncomingMessage, conn: Duplex): void {
  const rawUrl = req.url ?? "";
  const m = /^http:\/\/([^/?#]*)/i.exec(rawUrl);
  const target = m === null ? undefined : parseAuthority(m[1]!, 80);
  const { host, port } = typeof target === "object" ? target : { host: "", port: 0 };
  const reason = `${req.method ?? "?"} ${urlForLog(rawUrl)}: Upgrade (websocket) over plain-HTTP proxying is refused; use CONNECT (wss:// or ws:// through HTTPS_PROXY)`;
  ctx.entry({
    kind: "http",
    method: req.method ?? "",
    host,
    port,
    allowed: false,
    reason,
    status: 400,
  });
  rawRefusal(conn, 400, reason, false);
}

/** Checks one request, then forwards it and streams the response back. */
export async function forward(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): Promise<void> {
  const started = Date.now();
  const method = req.method ?? "";
  const rawUrl = req.url ?? "";
  const refuse = (status: number, reason: string, host = "", port = 0, url?: string) => {
    ctx.entry({ kind: "http", method, host, port, allowed: false, reason, status, url });
    refuseResponse(res, status, reason, status === 403);
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
  if (pairs >= ctx.maxHeaders)
    return deny(431, `${method} ${url}: more than ${ctx.maxHeaders - 1} header fields`);
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
    return deny(400, `${method} ${url}: Transfer-Encoding "${te}" is not supported (only chunked)`);
  }

  const { decision, status } = await ctx.decide(target);
  if (!decision.allowed) return deny(status, decision.reason);
  const address = decision.address!;
  const base = { kind: "http" as const, method, host, port, address, rule: decision.rule, url };
  ctx.entry({ ...base, allowed: true, reason: decision.reason });

  let bytesUp = 0;
  let bytesDown = 0;
  let logged = false;
  const close = (closeStatus: number | undefined, reason: string) => {
    if (logged) return;
    logged = true;
    ctx.entry({
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
  const upstreamReq = ctx.track(
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
    ctx.connectTimeoutMs,
  );
  upstreamReq.once("socket", (socket: Socket) => {
    socket.once("connect", () => {
      clearTimeout(connectTimer);
      connectTimer = undefined;
    });
  });
  upstreamReq.setTimeout(ctx.idleTimeoutMs, () =>
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
      refuseResponse(res, failStatus, reason, false);
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
      refuseResponse(res, 502, reason, false);
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
