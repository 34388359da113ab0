/**
 * Guest-initiated hybrid vsock: a guest connection to host port P arrives on the unix socket
 * `<uds_path>_P` (Firecracker's convention, also vhost-device-vsock's and Cloud Hypervisor's).
 */
import { chmodSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { CorralError } from "../../errors.js";

export function guestPortPath(udsPath: string, port: number): string {
  return `${udsPath}_${port}`;
}

/**
 * Listens for guest connections to `port`; the socket file is 0600. A stale socket file of an
 * earlier listener is replaced. `allowHalfOpen`: a tunnel's client may finish sending while
 * the reply still flows.
 */
export async function listenForGuest(
  udsPath: string,
  port: number,
  onConnection: (socket: Socket) => void,
  options: { allowHalfOpen?: boolean } = {},
): Promise<Server> {
  const path = guestPortPath(udsPath, port);
  rmSync(path, { force: true });
  const server = createServer({ allowHalfOpen: options.allowHalfOpen ?? false }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(new CorralError("VSOCK", `cannot listen on ${path}: ${err.message}`, { cause: err })),
    );
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

/**
 * Resolves with the first line a guest sends on `port` (bounded: the guest is untrusted).
 * Lines that don't match `pattern` are ignored; the caller owns timeouts via `signal`.
 */
export async function firstGuestLine(
  udsPath: string,
  port: number,
  pattern: RegExp,
  maxBytes = 128,
): Promise<{ line: Promise<string>; close: () => void }> {
  let deliver: (line: string) => void = () => {};
  const line = new Promise<string>((resolve) => {
    deliver = resolve;
  });
  const open = new Set<Socket>();
  const server = await listenForGuest(udsPath, port, (socket) => {
    let buffered = "";
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    // A guest that connects and says nothing must not keep the host process alive.
    socket.setTimeout(10_000, () => socket.destroy());
    socket.setEncoding("latin1");
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const text = buffered.slice(0, newline);
        socket.destroy();
        if (pattern.test(text)) deliver(text);
      } else if (buffered.length > maxBytes) {
        socket.destroy();
      }
    });
  });
  return {
    line,
    close: () => {
      server.close();
      for (const socket of open) socket.destroy();
    },
  };
}
