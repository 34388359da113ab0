/**
 * tcp_connect: the agent opens a TCP connection inside the guest and, after its `C` reply,
 * the same stream carries that connection's bytes both ways (port forwards).
 */
import type { Duplex } from "node:stream";
import { CorralError } from "../../errors.js";
import { guestFailure, openStream } from "./connection.js";
import { decodeKvMap, encodeFrame, encodeKv, PROTOCOL_VERSION } from "./frames.js";

const HEADER = 5;
/** The reply is a short key=value list; anything longer is not our agent. */
const MAX_REPLY = 4096;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export interface TcpConnectOptions {
  /** An IPv4 address in the guest; default 127.0.0.1. */
  host?: string;
  /** How long the handshake (request -> `C`) may take; default 15 s. */
  timeoutMs?: number;
}

/**
 * Resolves with the stream once the guest connected; from then on it is the guest
 * connection (half-closes are carried both ways). Rejects with the guest's errno name in
 * `details.guestCode` (e.g. ECONNREFUSED) when nothing listens there.
 */
export async function tcpConnect(
  connect: () => Promise<Duplex>,
  port: number,
  opts: TcpConnectOptions = {},
): Promise<Duplex> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CorralError("INVALID_ARGUMENT", `port: ${port} is not a TCP port (1-65535)`);
  }
  const host = opts.host ?? "127.0.0.1";
  if (!IPV4.test(host)) {
    throw new CorralError("INVALID_ARGUMENT", `host: "${host}" is not an IPv4 address`);
  }
  const socket = await openStream(connect);
  return new Promise<Duplex>((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const finish = (err?: CorralError) => {
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("close", onClose);
      socket.off("error", onError);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
      }
    };
    // 'readable' + read() rather than 'data': once the listener is gone the stream is back
    // to its initial mode, so the caller's own 'data' listener or pipe() starts it.
    const onReadable = () => {
      for (let chunk = socket.read(); chunk !== null; chunk = socket.read()) {
        buffered = Buffer.concat([buffered, chunk as Buffer]);
      }
      if (buffered.length < HEADER) return;
      const type = String.fromCharCode(buffered[0]!);
      const length = buffered.readUInt32BE(1);
      if ((type !== "C" && type !== "F") || length > MAX_REPLY) {
        finish(new CorralError("AGENT_PROTOCOL", "unexpected reply to tcp_connect"));
        return;
      }
      if (buffered.length < HEADER + length) return;
      const frame = { type, payload: buffered.subarray(HEADER, HEADER + length) };
      const rest = buffered.subarray(HEADER + length);
      try {
        if (type === "F") {
          finish(guestFailure(frame));
          return;
        }
        decodeKvMap(frame.payload);
      } catch (err) {
        finish(err instanceof CorralError ? err : new CorralError("AGENT_PROTOCOL", String(err)));
        return;
      }
      finish();
      if (rest.length > 0) socket.unshift(rest);
      // The guest's EOF must not end our sending side: half-closes go through both ways.
      socket.allowHalfOpen = true;
      resolve(socket);
    };
    const onClose = () =>
      finish(new CorralError("AGENT", "the guest agent closed the connection during tcp_connect"));
    const onError = (err: Error) =>
      finish(new CorralError("AGENT", `tcp_connect failed: ${err.message}`, { cause: err }));
    const timer = setTimeout(
      () => finish(new CorralError("TIMEOUT", `the guest did not connect to ${host}:${port}`)),
      opts.timeoutMs ?? 15_000,
    );
    socket.on("readable", onReadable);
    socket.on("close", onClose);
    socket.on("error", onError);
    socket.write(
      encodeFrame(
        "R",
        encodeKv([
          ["op", "tcp_connect"],
          ["version", PROTOCOL_VERSION],
          ["host", host],
          ["port", String(port)],
        ]),
      ),
    );
  });
}
