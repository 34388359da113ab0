/**
 * The host<->guest channel, as the lifecycle and the daemon use it: dial a port the guest
 * listens on, or listen for connections the guest makes to a host port. Which transport
 * carries it is the backend's business (Apple containerization's `dial(port)`/`listen(port)`
 * on the VM instance): hybrid vsock for QEMU's vhost-device-vsock sidecar, Firecracker and
 * Cloud Hypervisor; a unix socket per port for a macOS helper.
 */
import type { Server, Socket } from "node:net";

export interface DialOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface GuestChannel {
  /** How connections are carried (reported by `corral doctor` and the feature record). */
  readonly kind: "hybrid-vsock" | "unix-per-port";
  /** A stream to `port` in the guest; fails with code VSOCK when nothing answers there. */
  dial(port: number, options?: DialOptions): Promise<Socket>;
  /** Accepts guest-initiated connections to host `port` (the socket file is the user's, 0600). */
  listen(
    port: number,
    onConnection: (socket: Socket) => void,
    options?: { allowHalfOpen?: boolean },
  ): Promise<Server>;
  /**
   * Resolves with the first line a guest sends to host `port` that matches `pattern`
   * (bounded: the guest is untrusted); `close` stops listening.
   */
  firstLine(port: number, pattern: RegExp): Promise<{ line: Promise<string>; close(): void }>;
}
