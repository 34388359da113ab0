/**
 * Idle agent connections kept for reuse (the `keep=1` request key, docs/agent-protocol.md).
 * A kept connection's guest handler is a warm process, so a ping or an exec on it skips a
 * process start in the guest, which under TCG costs more than the command itself.
 */
import type { Duplex } from "node:stream";
import type { Connect } from "./connection.js";

/** A connection for one operation; `keep` takes it back after the operation's success frame. */
export interface AgentStream {
  socket: Duplex;
  /** True when the socket served an earlier operation. */
  reused: boolean;
  keep?: (socket: Duplex) => void;
}

export type OpenStream = () => Promise<AgentStream>;

export interface KeptConnectionsOptions {
  /** Idle connections are closed after this long; must stay well under the agent's 120 s. */
  idleMs: number;
  /** At most this many idle connections (and so idle guest handlers) are kept. */
  max: number;
}

interface Idle {
  socket: Duplex;
  release: () => void;
}

/** Node sockets keep the event loop alive; an idle one must not keep a CLI from exiting. */
function setRef(socket: Duplex, ref: boolean): void {
  const handle = socket as Duplex & { ref?: () => void; unref?: () => void };
  if (ref) handle.ref?.();
  else handle.unref?.();
}

export class KeptConnections {
  private readonly idle: Idle[] = [];
  private closed = false;

  constructor(
    private readonly connect: Connect,
    private readonly opts: KeptConnectionsOptions,
  ) {}

  /** The most recently used live idle connection, else a new one. */
  async open(): Promise<AgentStream> {
    const keep = (socket: Duplex) => this.put(socket);
    for (let entry = this.idle.pop(); entry !== undefined; entry = this.idle.pop()) {
      entry.release();
      const { socket } = entry;
      if (!socket.destroyed && socket.readable && socket.writable) {
        setRef(socket, true);
        return { socket, reused: true, keep };
      }
      socket.destroy();
    }
    const socket = await this.connect();
    return { socket, reused: false, keep };
  }

  /** Drops every idle connection; later ones are not kept either. */
  close(): void {
    this.closed = true;
    this.drop();
  }

  /** Drops the idle connections (e.g. after the VM's vsock device was replaced). */
  drop(): void {
    for (const entry of this.idle.splice(0)) {
      entry.release();
      entry.socket.destroy();
    }
  }

  private put(socket: Duplex): void {
    if (this.closed || socket.destroyed || this.idle.length >= this.opts.max) {
      socket.destroy();
      return;
    }
    const entry: Idle = { socket, release: () => {} };
    const gone = () => {
      const i = this.idle.indexOf(entry);
      if (i >= 0) this.idle.splice(i, 1);
      entry.release();
      socket.destroy();
    };
    // An idle agent sends nothing: any byte, an EOF or an error ends the connection.
    socket.on("data", gone);
    socket.on("end", gone);
    socket.on("close", gone);
    socket.on("error", gone);
    const timer = setTimeout(gone, this.opts.idleMs);
    timer.unref();
    entry.release = () => {
      clearTimeout(timer);
      socket.off("data", gone);
      socket.off("end", gone);
      socket.off("close", gone);
      socket.off("error", gone);
    };
    setRef(socket, false);
    socket.resume();
    this.idle.push(entry);
  }
}
