/**
 * A learning Ethernet switch in userspace, for `--network switch:NAME`: each port is a stream
 * speaking QEMU's `-netdev stream` framing (frames.ts), usually the daemon's connection to one
 * VM's QEMU. Like an IEEE 802.1D bridge without STP: source MACs are learned per port (never
 * multicast ones), known unicast goes to its one port, broadcast / multicast / unknown unicast
 * is flooded, nothing ever goes back out of its ingress port, entries age out.
 *
 * Every port is read as fast as it sends and never paused: QEMU 7.2 writes to its stream
 * socket in blocking mode from its main loop, so a reader that stops reading freezes that
 * whole VM (QMP and serial included). Backpressure therefore only ever drops: a port whose
 * stream is not draining (writableLength above maxQueuedBytesPerPort) loses the frames meant
 * for it, and the other ports carry on.
 *
 * The switch owns the streams attached to it: detach() and close() destroy them.
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { CorralError } from "../../errors.js";
import { encodeFrame, FrameDecoder, FrameError } from "./frames.js";

export interface EthernetSwitchOptions {
  /** A learned MAC is forgotten after this long without a frame from it. Default 300_000. */
  macAgingMs?: number;
  /** Above this many bytes queued in a port's stream, frames to that port are dropped. */
  maxQueuedBytesPerPort?: number;
  /** Source MACs learned per port at most (bounds the table against a spoofing guest). */
  maxMacsPerPort?: number;
  /** Clock for aging, in ms. Default Date.now. */
  now?: () => number;
}

export const DEFAULT_MAC_AGING_MS = 300_000;
export const DEFAULT_MAX_QUEUED_BYTES_PER_PORT = 1024 * 1024;
export const DEFAULT_MAX_MACS_PER_PORT = 1024;

export interface PortStats {
  /** Frames and bytes (Ethernet frame, without the 4-byte length) received from the port. */
  rxFrames: number;
  rxBytes: number;
  /** Frames and bytes written to the port. */
  txFrames: number;
  txBytes: number;
  /** Received frames not forwarded: destination on the ingress port, invalid source MAC. */
  rxDropped: number;
  /** Frames meant for this port dropped because its stream was not draining. */
  txDropped: number;
  txDroppedBytes: number;
  /** MACs currently learned on this port. */
  macs: number;
}

export interface SwitchStats {
  name: string;
  /** Entries in the MAC table (expired ones removed first). */
  macs: number;
  /** Frames sent to every other port (broadcast, multicast, unknown unicast). */
  flooded: number;
  ports: Record<string, PortStats>;
}

/** Why a port left the switch. */
export type DetachReason = "detached" | "ended" | "error" | "protocol" | "closed";

export interface EthernetSwitchEvents {
  /** A port's stream failed or its peer broke the framing; the port is detached right after. */
  "port-error": [portId: string, error: CorralError];
  /** A port left the switch, for whatever reason; its MACs are forgotten. */
  "port-detached": [portId: string, reason: DetachReason];
}

interface MacEntry {
  port: Port;
  lastSeen: number;
}

interface Port {
  readonly id: string;
  readonly stream: Duplex;
  readonly decoder: FrameDecoder;
  readonly macs: Set<number>;
  readonly stats: Omit<PortStats, "macs">;
  readonly cleanup: () => void;
}

const BROADCAST_OR_MULTICAST = 0x01;

/** A MAC as a number (48 bits fit in a double exactly): cheap Map keys. */
function macAt(frame: Buffer, offset: number): number {
  return frame.readUIntBE(offset, 6);
}

function isGroupMac(frame: Buffer, offset: number): boolean {
  return ((frame[offset] ?? 0) & BROADCAST_OR_MULTICAST) !== 0;
}

export class EthernetSwitch extends EventEmitter<EthernetSwitchEvents> {
  readonly name: string;
  readonly #agingMs: number;
  readonly #maxQueued: number;
  readonly #maxMacsPerPort: number;
  readonly #now: () => number;
  readonly #ports = new Map<string, Port>();
  readonly #table = new Map<number, MacEntry>();
  #flooded = 0;
  #closed = false;

  constructor(name: string, options: EthernetSwitchOptions = {}) {
    super();
    this.name = name;
    this.#agingMs = positive(options.macAgingMs, DEFAULT_MAC_AGING_MS, "macAgingMs");
    this.#maxQueued = positive(
      options.maxQueuedBytesPerPort,
      DEFAULT_MAX_QUEUED_BYTES_PER_PORT,
      "maxQueuedBytesPerPort",
    );
    this.#maxMacsPerPort = positive(
      options.maxMacsPerPort,
      DEFAULT_MAX_MACS_PER_PORT,
      "maxMacsPerPort",
    );
    this.#now = options.now ?? Date.now;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Adds a port; the switch reads `stream` from now on and owns it. */
  attach(id: string, stream: Duplex): void {
    if (this.#closed) {
      throw new CorralError("NETWORK", `switch ${this.name} is closed`, {
        details: { switch: this.name, port: id },
      });
    }
    if (this.#ports.has(id)) {
      throw new CorralError("INVALID_ARGUMENT", `switch ${this.name} already has a port ${id}`, {
        details: { switch: this.name, port: id },
      });
    }
    if (stream.destroyed) {
      throw new CorralError("NETWORK", `port ${id}: the stream is already closed`, {
        details: { switch: this.name, port: id },
      });
    }
    const onData = (chunk: Buffer) => this.#receive(port, chunk);
    const onEnd = () => this.#remove(port, "ended");
    const onClose = () => this.#remove(port, "ended");
    const onError = (err: Error) => {
      this.#fail(
        port,
        "error",
        new CorralError("NETWORK", `switch ${this.name} port ${id}: ${err.message}`, {
          cause: err,
          details: { switch: this.name, port: id },
        }),
      );
    };
    const port: Port = {
      id,
      stream,
      decoder: new FrameDecoder(),
      macs: new Set(),
      stats: {
        rxFrames: 0,
        rxBytes: 0,
        txFrames: 0,
        txBytes: 0,
        rxDropped: 0,
        txDropped: 0,
        txDroppedBytes: 0,
      },
      cleanup: () => {
        stream.off("data", onData);
        stream.off("end", onEnd);
        stream.off("close", onClose);
        stream.off("error", onError);
        // A late error from the destroyed stream must not crash the process.
        stream.on("error", () => {});
      },
    };
    this.#ports.set(id, port);
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onClose);
    stream.on("error", onError);
    stream.resume();
  }

  /** Removes a port (no-op if unknown), destroys its stream and forgets its MACs. */
  detach(id: string): void {
    const port = this.#ports.get(id);
    if (port !== undefined) this.#remove(port, "detached");
  }

  ports(): string[] {
    return [...this.#ports.keys()];
  }

  hasPort(id: string): boolean {
    return this.#ports.has(id);
  }

  stats(): SwitchStats {
    this.#expire();
    const ports: Record<string, PortStats> = {};
    for (const port of this.#ports.values()) {
      ports[port.id] = { ...port.stats, macs: port.macs.size };
    }
    return { name: this.name, macs: this.#table.size, flooded: this.#flooded, ports };
  }

  /** Detaches every port; the switch takes no new ones. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const port of [...this.#ports.values()]) this.#remove(port, "closed");
  }

  #receive(port: Port, chunk: Buffer): void {
    if (this.#ports.get(port.id) !== port) return;
    let frames: Buffer[];
    try {
      frames = port.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      // What came before the bad length is still good Ethernet: deliver it, then close.
      for (const frame of err.frames) this.#forward(port, frame);
      this.#fail(
        port,
        "protocol",
        new CorralError(
          "NETWORK",
          `switch ${this.name} port ${port.id}: ${err.message}; port closed`,
          { cause: err, details: { switch: this.name, port: port.id, length: err.length } },
        ),
      );
      return;
    }
    for (const frame of frames) this.#forward(port, frame);
  }

  #forward(ingress: Port, frame: Buffer): void {
    ingress.stats.rxFrames++;
    ingress.stats.rxBytes += frame.length;
    // A group (multicast/broadcast) or all-zero source is invalid (IEEE 802.3); like the
    // Linux bridge, drop the frame rather than learn or spread it.
    const src = macAt(frame, 6);
    if (isGroupMac(frame, 6) || src === 0) {
      ingress.stats.rxDropped++;
      return;
    }
    const now = this.#now();
    this.#learn(ingress, src, now);

    if (!isGroupMac(frame, 0)) {
      const entry = this.#lookup(macAt(frame, 0), now);
      if (entry !== undefined) {
        if (entry.port === ingress) {
          ingress.stats.rxDropped++;
          return;
        }
        this.#send(entry.port, encodeFrame(frame), frame.length);
        return;
      }
    }
    this.#flooded++;
    let encoded: Buffer | undefined;
    for (const port of this.#ports.values()) {
      if (port === ingress) continue;
      encoded ??= encodeFrame(frame);
      this.#send(port, encoded, frame.length);
    }
  }

  #send(port: Port, encoded: Buffer, frameBytes: number): void {
    const stream = port.stream;
    if (stream.destroyed || !stream.writable || stream.writableLength > this.#maxQueued) {
      port.stats.txDropped++;
      port.stats.txDroppedBytes += frameBytes;
      return;
    }
    stream.write(encoded);
    port.stats.txFrames++;
    port.stats.txBytes += frameBytes;
  }

  #learn(port: Port, mac: number, now: number): void {
    const entry = this.#table.get(mac);
    if (entry !== undefined) {
      if (entry.port !== port) {
        // The MAC moved (a VM re-attached, or a spoofer): the newest sender wins.
        entry.port.macs.delete(mac);
        if (!this.#roomFor(port, now)) {
          this.#table.delete(mac);
          return;
        }
        entry.port = port;
        port.macs.add(mac);
      }
      entry.lastSeen = now;
      return;
    }
    if (!this.#roomFor(port, now)) return;
    this.#table.set(mac, { port, lastSeen: now });
    port.macs.add(mac);
  }

  #roomFor(port: Port, now: number): boolean {
    if (port.macs.size < this.#maxMacsPerPort) return true;
    for (const mac of port.macs) {
      const entry = this.#table.get(mac);
      if (entry === undefined || now - entry.lastSeen > this.#agingMs) {
        this.#table.delete(mac);
        port.macs.delete(mac);
      }
    }
    return port.macs.size < this.#maxMacsPerPort;
  }

  #lookup(mac: number, now: number): MacEntry | undefined {
    const entry = this.#table.get(mac);
    if (entry === undefined) return undefined;
    if (now - entry.lastSeen > this.#agingMs) {
      this.#table.delete(mac);
      entry.port.macs.delete(mac);
      return undefined;
    }
    return entry;
  }

  #expire(): void {
    const now = this.#now();
    for (const [mac, entry] of this.#table) {
      if (now - entry.lastSeen > this.#agingMs) {
        this.#table.delete(mac);
        entry.port.macs.delete(mac);
      }
    }
  }

  #fail(port: Port, reason: DetachReason, error: CorralError): void {
    if (this.#ports.get(port.id) !== port) return;
    this.emit("port-error", port.id, error);
    this.#remove(port, reason);
  }

  #remove(port: Port, reason: DetachReason): void {
    if (this.#ports.get(port.id) !== port) return;
    this.#ports.delete(port.id);
    for (const mac of port.macs) this.#table.delete(mac);
    port.macs.clear();
    port.cleanup();
    port.stream.destroy();
    this.emit("port-detached", port.id, reason);
  }
}

function positive(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new CorralError("INVALID_ARGUMENT", `${field} must be a positive number, got ${value}`);
  }
  return value;
}
