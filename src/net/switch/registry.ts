/**
 * The daemon's named switches (`--network switch:NAME`) and its links to the VMs on them.
 * QEMU listens (`-netdev stream,server=on,addr.type=unix,addr.path=P`) and the daemon is the
 * client, so a restarted daemon can simply connect again: QEMU 7.2 re-accepts a new client
 * once it has read EOF from the previous one (it has no `reconnect=` for clients anyway).
 *
 * A dropped link is redialled with capped exponential backoff for as long as the socket path
 * exists (QEMU unlinks it when it exits cleanly; corral's reconcile removes it after a crash),
 * and never after disconnect(portId).
 */
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError, throwIfCancelled } from "../../errors.js";
import {
  type DetachReason,
  EthernetSwitch,
  type EthernetSwitchOptions,
  type SwitchStats,
} from "./ethernet-switch.js";

export const SWITCH_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

/** Returns the name if it is a valid switch name, else throws INVALID_ARGUMENT. */
export function validateSwitchName(name: string): string {
  if (!SWITCH_NAME_PATTERN.test(name)) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `network: invalid switch name ${JSON.stringify(name)}`,
      {
        field: "network",
        hint: "use 1-32 characters: lowercase letters, digits, '_', '.', '-', starting with a letter or digit (e.g. switch:lab)",
        details: { field: "network", name },
      },
    );
  }
  return name;
}

export interface SwitchRegistryOptions {
  /** Options for every switch the registry creates. */
  switch?: EthernetSwitchOptions;
  /** First delay before redialling a dropped link. Default 100 ms. */
  reconnectMinMs?: number;
  /** Cap of the doubling redial delay. Default 5000 ms. */
  reconnectMaxMs?: number;
}

export interface SwitchConnectOptions {
  /** Delay between attempts while the socket is missing or refuses. Default 20 ms. */
  retryMs?: number;
  /** Bounds the initial connection (QEMU creates its socket just after it starts). 10_000 ms. */
  timeoutMs?: number;
  /** Aborts the initial connection; ignored once connect() has resolved. */
  signal?: AbortSignal;
}

export interface SwitchListing {
  name: string;
  ports: string[];
  stats: SwitchStats;
}

/** "connected" (first time or again), "reconnecting" (the link dropped), "gone" (given up). */
export type PortLinkState = "connected" | "reconnecting" | "gone";

export interface SwitchRegistryEvents {
  "port-error": [switchName: string, portId: string, error: CorralError];
  "port-state": [switchName: string, portId: string, state: PortLinkState];
}

interface Link {
  readonly switchName: string;
  readonly portId: string;
  readonly socketPath: string;
  readonly abort: AbortController;
  backoffMs: number;
  connectedAt: number;
}

const RETRIABLE = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN"]);

export class SwitchRegistry extends EventEmitter<SwitchRegistryEvents> {
  readonly #switches = new Map<string, EthernetSwitch>();
  readonly #links = new Map<string, Link>();
  readonly #switchOptions: EthernetSwitchOptions;
  readonly #minMs: number;
  readonly #maxMs: number;
  #closed = false;

  constructor(options: SwitchRegistryOptions = {}) {
    super();
    this.#switchOptions = options.switch ?? {};
    this.#minMs = options.reconnectMinMs ?? 100;
    this.#maxMs = Math.max(this.#minMs, options.reconnectMaxMs ?? 5000);
  }

  /** The switch with this name, created on first use. */
  get(name: string): EthernetSwitch {
    validateSwitchName(name);
    this.#checkOpen();
    let sw = this.#switches.get(name);
    if (sw === undefined) {
      const created = new EthernetSwitch(name, this.#switchOptions);
      created.on("port-error", (portId, error) => this.emit("port-error", name, portId, error));
      created.on("port-detached", (portId, reason) => this.#onDetached(created, portId, reason));
      this.#switches.set(name, created);
      sw = created;
    }
    return sw;
  }

  /**
   * Connects to a VM's QEMU stream socket and attaches it to the switch as `portId`, retrying
   * while the socket is missing or refuses. Resolves once attached; the link then lives
   * (and reconnects) until disconnect(portId) or close().
   */
  async connect(
    switchName: string,
    portId: string,
    socketPath: string,
    options: SwitchConnectOptions = {},
  ): Promise<void> {
    const sw = this.get(switchName);
    if (this.#links.has(portId)) {
      const other = this.#links.get(portId)?.switchName;
      throw new CorralError("INVALID_ARGUMENT", `port ${portId} is already on switch ${other}`, {
        details: { switch: other, port: portId },
      });
    }
    const link: Link = {
      switchName,
      portId,
      socketPath,
      abort: new AbortController(),
      backoffMs: this.#minMs,
      connectedAt: 0,
    };
    this.#links.set(portId, link);
    const retryMs = options.retryMs ?? 20;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    const signal =
      options.signal === undefined
        ? link.abort.signal
        : AbortSignal.any([link.abort.signal, options.signal]);
    const details = { switch: switchName, port: portId, socketPath };
    let socket: Socket;
    try {
      for (;;) {
        this.#checkLink(link, options.signal);
        try {
          socket = await dial(socketPath);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? "";
          if (!RETRIABLE.has(code)) {
            throw new CorralError("NETWORK", `cannot connect to ${socketPath}: ${errText(err)}`, {
              cause: err,
              details,
            });
          }
          if (Date.now() + retryMs > deadline) {
            throw new CorralError(
              "TIMEOUT",
              `switch ${switchName}: ${socketPath} accepted no connection within ${timeoutMs} ms (${code})`,
              { cause: err, hint: "is the VM's QEMU running?", details },
            );
          }
          await sleep(retryMs, undefined, { signal }).catch(() => {});
        }
      }
      if (link.abort.signal.aborted || options.signal?.aborted) {
        socket.destroy();
        this.#checkLink(link, options.signal);
      }
      link.connectedAt = Date.now();
      try {
        sw.attach(portId, socket);
      } catch (err) {
        socket.destroy();
        throw err;
      }
    } catch (err) {
      if (this.#links.get(portId) === link) this.#links.delete(portId);
      throw err;
    }
    this.emit("port-state", switchName, portId, "connected");
  }

  /** Detaches the port and stops redialling it; no-op for an unknown port. */
  disconnect(portId: string): void {
    const link = this.#links.get(portId);
    if (link === undefined) return;
    this.#links.delete(portId);
    link.abort.abort();
    const sw = this.#switches.get(link.switchName);
    if (sw === undefined) return;
    sw.detach(portId);
    // An empty switch has nothing worth keeping; get() makes a new one when needed.
    if (
      sw.ports().length === 0 &&
      ![...this.#links.values()].some((l) => l.switchName === sw.name)
    ) {
      sw.close();
      this.#switches.delete(sw.name);
    }
  }

  list(): SwitchListing[] {
    return [...this.#switches.values()].map((sw) => ({
      name: sw.name,
      ports: sw.ports(),
      stats: sw.stats(),
    }));
  }

  /** Stops every link and closes every switch. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#links.values()) link.abort.abort();
    this.#links.clear();
    for (const sw of this.#switches.values()) sw.close();
    this.#switches.clear();
  }

  #onDetached(sw: EthernetSwitch, portId: string, reason: DetachReason): void {
    const link = this.#links.get(portId);
    if (link === undefined || link.switchName !== sw.name || link.abort.signal.aborted) return;
    if (reason === "detached" || reason === "closed") return;
    // A link that held for a while starts over at the short delay; a flapping one backs off.
    if (Date.now() - link.connectedAt >= this.#maxMs) link.backoffMs = this.#minMs;
    this.emit("port-state", sw.name, portId, "reconnecting");
    void this.#redial(sw, link);
  }

  async #redial(sw: EthernetSwitch, link: Link): Promise<void> {
    const signal = link.abort.signal;
    for (;;) {
      const delay = link.backoffMs;
      link.backoffMs = Math.min(this.#maxMs, link.backoffMs * 2);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return;
      }
      if (signal.aborted) return;
      if (!existsSync(link.socketPath)) {
        if (this.#links.get(link.portId) === link) this.#links.delete(link.portId);
        this.emit("port-state", sw.name, link.portId, "gone");
        return;
      }
      let socket: Socket;
      try {
        socket = await dial(link.socketPath);
      } catch {
        continue;
      }
      if (signal.aborted || sw.closed) {
        socket.destroy();
        return;
      }
      link.connectedAt = Date.now();
      sw.attach(link.portId, socket);
      this.emit("port-state", sw.name, link.portId, "connected");
      return;
    }
  }

  #checkLink(link: Link, signal: AbortSignal | undefined): void {
    throwIfCancelled(signal);
    if (link.abort.signal.aborted) {
      throw new CorralError(
        "NETWORK",
        `switch ${link.switchName}: port ${link.portId} was disconnected while connecting`,
        { details: { switch: link.switchName, port: link.portId } },
      );
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new CorralError("NETWORK", "the switch registry is closed");
  }
}

/** One connection attempt to a unix socket; rejects with the errno error. */
function dial(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const onError = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
