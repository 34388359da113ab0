/**
 * Firecracker's "hybrid vsock" handshake, also spoken by vhost-device-vsock (QEMU's sidecar)
 * and Cloud Hypervisor: connect to the unix socket, send `CONNECT <port>\n`, read `OK <n>\n`,
 * and from then on the stream is the guest's.
 */
import { createConnection, type Socket } from "node:net";
import { CorralError } from "../../errors.js";

export interface VsockConnectOptions {
  /** Bounds the whole handshake. Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * Why a connection failed, in details.reason:
 * - "unavailable": the unix socket is missing or nobody accepts on it (VMM or sidecar gone);
 * - "not-listening": the peer closed before OK, which is what a guest with no listener on
 *   the port looks like, so readiness loops retry on it;
 * - "protocol": the reply was not `OK <n>`.
 * Timeouts are CorralError("TIMEOUT") with details.reason "timeout".
 */
export type VsockFailureReason = "unavailable" | "not-listening" | "protocol" | "timeout";

const MAX_REPLY = 64;
const OK_LINE = /^OK \d+$/;

function unavailable(errno: string | undefined): boolean {
  return ["ENOENT", "ECONNREFUSED", "EACCES", "ENOTSOCK", "ENOTDIR", "EPERM"].includes(errno ?? "");
}

export function connectVsock(
  udsPath: string,
  port: number,
  options: VsockConnectOptions = {},
): Promise<Socket> {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) {
    return Promise.reject(
      new CorralError("INVALID_ARGUMENT", `vsock port must be an integer 0..2^32-1, got ${port}`),
    );
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  const details = { udsPath, port };
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection(udsPath);
    let connected = false;
    let settled = false;
    let received = Buffer.alloc(0);

    const finish = (err: CorralError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("readable", onReadable);
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.off("connect", onConnect);
      if (err !== undefined) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const fail = (reason: VsockFailureReason, message: string, cause?: unknown) =>
      finish(
        new CorralError(reason === "timeout" ? "TIMEOUT" : "VSOCK", message, {
          cause,
          details: { ...details, reason },
        }),
      );

    const onConnect = () => {
      connected = true;
      socket.write(`CONNECT ${port}\n`);
    };
    const onReadable = () => {
      for (;;) {
        const chunk = socket.read() as Buffer | null;
        if (chunk === null) return;
        received = Buffer.concat([received, chunk]);
        const nl = received.indexOf(10);
        const lineEnd = nl < 0 ? received.length : nl;
        if (lineEnd > MAX_REPLY) {
          fail(
            "protocol",
            `vsock ${udsPath}: reply to CONNECT ${port} is longer than ${MAX_REPLY} bytes`,
          );
          return;
        }
        if (nl < 0) continue;
        const line = received.subarray(0, nl).toString("latin1");
        if (!OK_LINE.test(line)) {
          fail(
            "protocol",
            `vsock ${udsPath}: expected "OK <port>" in reply to CONNECT ${port}, got ${JSON.stringify(line)}`,
          );
          return;
        }
        const rest = received.subarray(nl + 1);
        finish(undefined);
        // Bytes the guest sent right after OK belong to the caller's stream.
        if (rest.length > 0) socket.unshift(rest);
        return;
      }
    };
    const onError = (err: NodeJS.ErrnoException) => {
      if (!connected && unavailable(err.code)) {
        fail(
          "unavailable",
          `vsock socket ${udsPath} is unavailable: ${err.code ?? err.message}`,
          err,
        );
      } else if (err.code === "ECONNRESET" || err.code === "EPIPE") {
        fail("not-listening", notListening(), err);
      } else {
        fail("unavailable", `vsock socket ${udsPath}: ${err.message}`, err);
      }
    };
    const notListening = () =>
      `vsock ${udsPath}: the connection to guest port ${port} closed before OK (nothing listening there yet?)`;
    const onClose = () => {
      if (connected) fail("not-listening", notListening());
      else fail("unavailable", `vsock socket ${udsPath} closed before connecting`);
    };
    const timer = setTimeout(
      () => fail("timeout", `vsock connect to ${udsPath} port ${port} took over ${timeoutMs} ms`),
      timeoutMs,
    );

    socket.on("connect", onConnect);
    socket.on("readable", onReadable);
    socket.on("error", onError);
    socket.on("close", onClose);
  });
}
