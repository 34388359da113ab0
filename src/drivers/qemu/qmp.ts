/**
 * A small QMP (QEMU Machine Protocol) client over a unix socket. It knows nothing of VM
 * lifecycle: it speaks the wire protocol, matches replies by id and surfaces events.
 * The socket is treated as untrusted input: lines are bounded and must be JSON.
 */
import { EventEmitter } from "node:events";
import { createConnection, type Socket } from "node:net";
import { CorralError } from "../../errors.js";

export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
  package: string;
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** Bounds connect + greeting + capabilities negotiation. Default 5000 ms. */
  timeoutMs?: number;
  /** Longest accepted line in bytes. Default 16 MiB. */
  maxLineBytes?: number;
}

export interface QmpExecuteOptions {
  /** Default 30000 ms. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: CorralError) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_MAX_LINE = 16 * 1024 * 1024;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseGreeting(msg: unknown): QmpVersion {
  const qmp = isRecord(msg) ? msg.QMP : undefined;
  const version = isRecord(qmp) ? qmp.version : undefined;
  const qemu = isRecord(version) ? version.qemu : undefined;
  if (!isRecord(qmp) || !Array.isArray(qmp.capabilities) || !isRecord(qemu)) {
    throw new CorralError("VMM_CONTROL", "the QMP socket did not send a QMP greeting", {
      details: { received: JSON.stringify(msg).slice(0, 200) },
    });
  }
  const num = (v: unknown) => (typeof v === "number" && Number.isInteger(v) ? v : -1);
  const out = {
    major: num(qemu.major),
    minor: num(qemu.minor),
    micro: num(qemu.micro),
    package: isRecord(version) && typeof version.package === "string" ? version.package : "",
  };
  if (out.major < 0 || out.minor < 0 || out.micro < 0) {
    throw new CorralError("VMM_CONTROL", "the QMP greeting has a malformed version", {
      details: { received: JSON.stringify(msg).slice(0, 200) },
    });
  }
  return out;
}

export class QmpClient {
  /** QEMU's version from the greeting. */
  readonly version: QmpVersion;
  /** Resolves once the connection is gone, for whatever reason; never rejects. */
  readonly closed: Promise<void>;
  /** Why the connection ended, once it has (undefined after a clean close()). */
  closeError: CorralError | undefined;

  readonly #socket: Socket;
  readonly #events = new EventEmitter();
  readonly #pending = new Map<string, Pending>();
  #nextId = 1;
  #isClosed = false;
  #resolveClosed!: () => void;

  private constructor(socket: Socket, version: QmpVersion) {
    this.#socket = socket;
    this.version = version;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    // An "error" event with no listener would crash the process; errors reach callers
    // through pending commands and closeError instead.
    this.#events.on("error", () => {});
  }

  /** Connects, validates the greeting and leaves negotiation mode (qmp_capabilities). */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE;
    const deadline = Date.now() + timeoutMs;
    const socket = createConnection(socketPath);
    let client: QmpClient | undefined;
    let timer: NodeJS.Timeout | undefined;

    const handshake = new Promise<QmpClient>((resolve, reject) => {
      const fail = (err: CorralError) => {
        socket.destroy();
        reject(err);
      };
      timer = setTimeout(
        () =>
          fail(
            new CorralError("TIMEOUT", `QMP handshake on ${socketPath} took over ${timeoutMs} ms`, {
              details: { socketPath },
            }),
          ),
        timeoutMs,
      );
      socket.once("error", (err: NodeJS.ErrnoException) => {
        if (client === undefined) {
          fail(
            new CorralError(
              "VMM_CONTROL",
              `cannot connect to QMP socket ${socketPath}: ${err.message}`,
              {
                cause: err,
                details: { socketPath, errno: err.code },
              },
            ),
          );
        }
      });
      socket.once("close", () => {
        if (client === undefined) {
          reject(
            new CorralError("VMM_CONTROL", `QEMU closed the QMP connection during the handshake`, {
              details: { socketPath },
            }),
          );
        }
      });
      readLines(socket, maxLine, (line, err) => {
        if (err !== undefined) {
          if (client === undefined) fail(err);
          else client.#fail(err);
          return;
        }
        if (client !== undefined) {
          client.#onLine(line);
          return;
        }
        try {
          client = new QmpClient(socket, parseGreeting(line));
          client.#attach();
          clearTimeout(timer);
          resolve(client);
        } catch (e) {
          fail(e as CorralError);
        }
      });
    });

    try {
      const c = await handshake;
      await c.execute("qmp_capabilities", undefined, {
        timeoutMs: Math.max(1, deadline - Date.now()),
      });
      return c;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  #attach(): void {
    this.#socket.on("error", (err: NodeJS.ErrnoException) => {
      // A reset is QEMU going away mid-read, the same event as a clean close.
      const gone = err.code === "ECONNRESET" || err.code === "EPIPE";
      this.#fail(
        new CorralError(
          "VMM_CONTROL",
          gone
            ? `QEMU closed the QMP connection (${err.message})`
            : `QMP socket error: ${err.message}`,
          {
            cause: err,
            details: { errno: err.code },
          },
        ),
      );
    });
    this.#socket.on("close", () => {
      this.#fail(
        new CorralError(
          "VMM_CONTROL",
          "QEMU closed the QMP connection (the VMM exited or crashed)",
        ),
      );
    });
  }

  /** Runs a command; replies are matched by id, so concurrent calls are fine. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(
        this.closeError ??
          new CorralError("VMM_CONTROL", `QMP connection is closed (command ${command})`),
      );
    }
    const id = `corral-${this.#nextId++}`;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new CorralError("TIMEOUT", `QMP command ${command} got no reply within ${timeoutMs} ms`, {
            details: { command },
          }),
        );
      }, timeoutMs);
      this.#pending.set(id, {
        command,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer,
      });
      this.#socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  on(name: "event", listener: (event: QmpEvent) => void): this {
    this.#events.on(name, listener);
    return this;
  }

  off(name: "event", listener: (event: QmpEvent) => void): this {
    this.#events.off(name, listener);
    return this;
  }

  /**
   * Resolves with the next event called `name` (and matching `filter`, if given). Only events
   * arriving after the call count: start waiting before the command that triggers the event.
   */
  waitForEvent(
    name: string,
    options: { timeoutMs?: number; filter?: (event: QmpEvent) => boolean } = {},
  ): Promise<QmpEvent> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.#events.off("event", onEvent);
        this.#events.off("closed", onClosed);
      };
      const onEvent = (ev: QmpEvent) => {
        if (ev.event !== name || (options.filter !== undefined && !options.filter(ev))) return;
        cleanup();
        resolve(ev);
      };
      const onClosed = () => {
        cleanup();
        reject(
          this.closeError ??
            new CorralError("VMM_CONTROL", `QMP connection closed while waiting for event ${name}`),
        );
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new CorralError("TIMEOUT", `QMP event ${name} did not arrive within ${timeoutMs} ms`, {
            details: { event: name },
          }),
        );
      }, timeoutMs);
      if (this.#isClosed) {
        onClosed();
        return;
      }
      this.#events.on("event", onEvent);
      this.#events.on("closed", onClosed);
    });
  }

  /** Closes the connection; pending commands reject. QEMU keeps running. */
  close(): Promise<void> {
    this.#fail(undefined);
    return this.closed;
  }

  #onLine(msg: unknown): void {
    if (this.#isClosed) return;
    if (!isRecord(msg)) {
      this.#fail(new CorralError("VMM_CONTROL", "QMP sent a JSON value that is not an object"));
      return;
    }
    if (typeof msg.event === "string") {
      const ts = isRecord(msg.timestamp) ? msg.timestamp : {};
      const ev: QmpEvent = {
        event: msg.event,
        data: isRecord(msg.data) ? msg.data : {},
        timestamp: {
          seconds: typeof ts.seconds === "number" ? ts.seconds : 0,
          microseconds: typeof ts.microseconds === "number" ? ts.microseconds : 0,
        },
      };
      this.#events.emit("event", ev);
      return;
    }
    // Replies without a known id (e.g. to a command that already timed out) are dropped.
    if (typeof msg.id !== "string") return;
    const pending = this.#pending.get(msg.id);
    if (pending === undefined) return;
    this.#pending.delete(msg.id);
    clearTimeout(pending.timer);
    if ("return" in msg) {
      pending.resolve(msg.return);
    } else if (isRecord(msg.error)) {
      const cls = typeof msg.error.class === "string" ? msg.error.class : "GenericError";
      const desc = typeof msg.error.desc === "string" ? msg.error.desc : "unknown QMP error";
      pending.reject(
        new CorralError("VMM_CONTROL", desc, { details: { class: cls, command: pending.command } }),
      );
    } else {
      pending.reject(
        new CorralError("VMM_CONTROL", `malformed QMP reply to ${pending.command}`, {
          details: { command: pending.command },
        }),
      );
    }
  }

  #fail(err: CorralError | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.closeError = err;
    const reason = err ?? new CorralError("VMM_CONTROL", "QMP connection closed by the client");
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(p.timer);
      p.reject(
        new CorralError("VMM_CONTROL", `${reason.message} while running ${p.command}`, {
          cause: reason,
          details: { command: p.command },
        }),
      );
    }
    this.#socket.destroy();
    this.#events.emit("closed");
    this.#resolveClosed();
  }
}

/**
 * Splits the stream into JSON lines. A line longer than `maxLine` or one that is not JSON
 * ends the stream with an error: the peer is not trusted to be well behaved.
 */
function readLines(
  socket: Socket,
  maxLine: number,
  onLine: (msg: unknown, err?: CorralError) => void,
): void {
  let parts: Buffer[] = [];
  let size = 0;
  let broken = false;
  socket.on("data", (chunk: Buffer) => {
    let start = 0;
    while (!broken) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        const rest = chunk.subarray(start);
        size += rest.length;
        if (size > maxLine) return tooLong();
        if (rest.length > 0) parts.push(rest);
        return;
      }
      size += nl - start;
      if (size > maxLine) return tooLong();
      parts.push(chunk.subarray(start, nl));
      const text = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString("utf8");
      parts = [];
      size = 0;
      start = nl + 1;
      if (text.trim() === "") continue;
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch {
        broken = true;
        onLine(
          undefined,
          new CorralError("VMM_CONTROL", "QMP sent a line that is not JSON", {
            details: { line: text.slice(0, 200) },
          }),
        );
        return;
      }
      onLine(msg);
    }
  });
  function tooLong(): void {
    broken = true;
    parts = [];
    onLine(
      undefined,
      new CorralError("VMM_CONTROL", `QMP sent a line longer than ${maxLine} bytes`, {
        details: { maxLineBytes: maxLine },
      }),
    );
  }
}
