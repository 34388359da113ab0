/**
 * GuestChannel over hybrid vsock: `CONNECT <port>` on one unix socket to reach the guest,
 * `<uds>_<port>` sockets for the guest's own connections (Firecracker's convention, which
 * vhost-device-vsock and Cloud Hypervisor follow too).
 */
import type { Server, Socket } from "node:net";
import { connectVsock } from "../protocols/hybrid-vsock/connect.js";
import { firstGuestLine, listenForGuest } from "../protocols/hybrid-vsock/listen.js";
import type { DialOptions, GuestChannel } from "./channel.js";

export class HybridVsockChannel implements GuestChannel {
  readonly kind = "hybrid-vsock" as const;

  /** `udsPath`: the unix socket the VMM (or its sidecar) serves hybrid vsock on. */
  constructor(readonly udsPath: string) {}

  dial(port: number, options: DialOptions = {}): Promise<Socket> {
    return connectVsock(this.udsPath, port, { timeoutMs: options.timeoutMs ?? 5_000 });
  }

  listen(
    port: number,
    onConnection: (socket: Socket) => void,
    options: { allowHalfOpen?: boolean } = {},
  ): Promise<Server> {
    return listenForGuest(this.udsPath, port, onConnection, options);
  }

  firstLine(port: number, pattern: RegExp): Promise<{ line: Promise<string>; close(): void }> {
    return firstGuestLine(this.udsPath, port, pattern);
  }
}
