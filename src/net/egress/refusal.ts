/**
 * How the egress proxy says no: a small text/plain response with `X-Corral-Egress: denied`
 * (the policy refused) or `error` (anything else), then the connection closes.
 */
import { type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";

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
export function finishThenDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream.writableFinished) {
    stream.destroy();
    return;
  }
  stream.once("finish", () => stream.destroy());
  stream.end();
}

/** A refusal written as raw bytes on a guest connection no HTTP response is using. */
export function rawRefusal(conn: Duplex, status: number, reason: string, denied: boolean): void {
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

/** A refusal as the response to a plain HTTP request (destroyed if one is under way). */
export function refuseResponse(
  res: ServerResponse,
  status: number,
  reason: string,
  denied: boolean,
): void {
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
