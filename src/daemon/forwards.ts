/**
 * Port forwards: a TCP listener on the host per `-p`, each accepted connection carried to the
 * guest port by the agent's tcp_connect over its own vsock stream (so forwards work with
 * `--network none`). Lives in the daemon, so forwards outlive the CLI that started the VM.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { portError } from "../net/host-ports.js";
import type { PortForward } from "../spec/ports.js";

export interface ForwardStatus extends PortForward {
  connections: { active: number; total: number; failed: number };
}

export class PortForwarder {
  private readonly server: Server;
  private readonly sockets = new Set<Duplex>();
  private readonly counts = { active: 0, total: 0, failed: 0 };

  private constructor(
    readonly forward: PortForward,
    private readonly openGuest: (guestPort: number) => Promise<Duplex>,
  ) {
    this.server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) =>
      this.accept(client),
    );
  }

  /** Binds the host port now: a busy port is an error before anything else happens. */
  static async listen(
    forward: PortForward,
    openGuest: (guestPort: number) => Promise<Duplex>,
  ): Promise<PortForwarder> {
    const forwarder = new PortForwarder(forward, openGuest);
    await new Promise<void>((resolve, reject) => {
      forwarder.server.once("error", (err: NodeJS.ErrnoException) =>
        reject(portError(forward, err)),
      );
      forwarder.server.listen(
        { host: forward.hostIp, port: forward.hostPort, exclusive: true },
        resolve,
      );
    });
    forwarder.server.on("error", () => {});
    return forwarder;
  }

  status(): ForwardStatus {
    return { ...this.forward, connections: { ...this.counts } };
  }

  private async accept(client: Socket): Promise<void> {
    this.counts.total++;
    this.counts.active++;
    this.sockets.add(client);
    client.setNoDelay(true);
    client.on("error", () => {});
    client.once("close", () => {
      this.counts.active--;
      this.sockets.delete(client);
    });
    let guest: Duplex;
    try {
      guest = await this.openGuest(this.forward.guestPort);
    } catch {
      // Nothing listens in the guest (or the VM is gone): the client sees a reset.
      this.counts.failed++;
      client.resetAndDestroy();
      return;
    }
    if (client.destroyed) {
      guest.destroy();
      return;
    }
    this.sockets.add(guest);
    guest.on("error", () => client.destroy());
    client.on("error", () => guest.destroy());
    guest.once("close", () => {
      this.sockets.delete(guest);
      if (!client.writableFinished) client.destroy();
    });
    client.once("close", () => {
      if (!guest.writableFinished) guest.destroy();
    });
    // pipe() ends the other side when one side ends: half-closes go through both ways.
    client.pipe(guest);
    guest.pipe(client);
    client.resume();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
