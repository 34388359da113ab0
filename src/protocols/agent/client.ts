/**
 * Host side of the guest agent protocol (docs/agent-protocol.md). Knows nothing of VMs or
 * vsock: `connect` hands it a fresh connected stream. With `keepAlive`, ping, set_time and
 * exec reuse idle connections (the agent's `keep=1`); everything else gets its own.
 */
import type { Duplex, Readable } from "node:stream";
import { CorralError, isCorralError } from "../../errors.js";
import { setGuestTime } from "./clock.js";
import { AgentConnection, type Connect, openStream } from "./connection.js";
import { ExecProcess, type ExecRequest, type ExecResult } from "./exec.js";
import { type ReadFileOptions, readFile, type WriteFileOptions, writeFile } from "./files.js";
import { decodeKvMap, parseUint, requireKey } from "./frames.js";
import {
  type AgentStream,
  KeptConnections,
  type KeptConnectionsOptions,
  type OpenStream,
} from "./kept.js";
import { type TcpConnectOptions, tcpConnect } from "./tcp.js";
import { checkPositiveInt } from "./validate.js";

export type { Connect } from "./connection.js";
export type { ExecRequest, ExecResult } from "./exec.js";
export { ExecProcess } from "./exec.js";
export type { ReadFileOptions, WriteFileOptions } from "./files.js";
export type { KeptConnectionsOptions } from "./kept.js";
export type { TcpConnectOptions } from "./tcp.js";

export interface AgentClientOptions {
  /** Reuse idle connections for ping, set_time and exec; off by default. */
  keepAlive?: KeptConnectionsOptions;
}

export interface PingResult {
  /** Agent version, e.g. "0.1.0". */
  version: string;
  /** Protocol version the agent speaks. */
  protocol: string;
  /** Guest kernel release (uname -r). */
  kernel: string;
  uptimeMs: number;
  hostname: string;
}

export interface RunRequest extends ExecRequest {
  /** Cap on stdout + stderr kept in memory; default 64 MiB. */
  maxOutputBytes?: number;
}

export interface RunResult extends ExecResult {
  stdout: Buffer;
  stderr: Buffer;
}

const DEFAULT_PING_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;
const MAX_FIELD = 256;

/** A reused connection that fails without a guest reply was most likely stale. */
function staleFailure(stream: AgentStream, err: unknown): boolean {
  return stream.reused && isCorralError(err, "AGENT") && err.details?.guestCode === undefined;
}

/**
 * Agents before 0.2.0 do not know `keep` and refuse the whole request (nothing ran): the
 * operation is sent again without it, and this client stops asking.
 */
function keepRefused(stream: AgentStream, err: unknown): boolean {
  return (
    stream.keep !== undefined &&
    isCorralError(err, "AGENT") &&
    err.details?.guestCode === "BAD_REQUEST" &&
    err.message.includes("unknown request key")
  );
}

export class AgentClient {
  private readonly kept: KeptConnections | undefined;
  private keepUnsupported = false;

  constructor(
    private readonly connect: Connect,
    opts: AgentClientOptions = {},
  ) {
    this.kept =
      opts.keepAlive === undefined
        ? undefined
        : new KeptConnections(() => openStream(connect), opts.keepAlive);
  }

  /** Closes the idle connections; the client stays usable (and keeps no more). */
  close(): void {
    this.kept?.close();
  }

  /** Closes the idle connections, e.g. after the guest's vsock device was replaced. */
  dropIdle(): void {
    this.kept?.drop();
  }

  private readonly openFresh = async (): Promise<AgentStream> => ({
    socket: await openStream(this.connect),
    reused: false,
  });

  private readonly openKeepable = (): Promise<AgentStream> =>
    this.kept === undefined || this.keepUnsupported ? this.openFresh() : this.kept.open();

  /** When `err` says the agent refused `keep`, stops asking; returns a way to open again. */
  private readonly fallbackFor = (stream: AgentStream, err: unknown): OpenStream | undefined => {
    if (!keepRefused(stream, err)) return undefined;
    this.keepUnsupported = true;
    this.kept?.drop();
    return this.openFresh;
  };

  /**
   * Runs an idempotent operation, once more on a fresh connection if a kept one was stale or
   * the agent refused `keep`.
   */
  private async idempotent<T>(op: (open: OpenStream) => Promise<T>): Promise<T> {
    let used: AgentStream | undefined;
    const first = async () => {
      used = await this.openKeepable();
      return used;
    };
    try {
      return await op(first);
    } catch (err) {
      if (used === undefined) throw err;
      const fallback = this.fallbackFor(used, err);
      if (fallback !== undefined) return op(fallback);
      if (!staleFailure(used, err)) throw err;
      return op(async () => {
        const stream = await this.openFresh();
        return { ...stream, keep: used?.keep };
      });
    }
  }

  async ping(opts: { timeoutMs?: number } = {}): Promise<PingResult> {
    const timeoutMs =
      opts.timeoutMs === undefined
        ? DEFAULT_PING_TIMEOUT_MS
        : checkPositiveInt("timeoutMs", opts.timeoutMs);
    let conn: AgentConnection | undefined;
    let expired = false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        expired = true;
        const err = new CorralError(
          "TIMEOUT",
          `guest agent did not answer within ${timeoutMs} ms`,
          {
            hint: "the guest may still be booting, or the agent is not running",
          },
        );
        conn?.fail(err);
        reject(err);
      }, timeoutMs);
    });
    const attempt = async (open: () => Promise<AgentStream>): Promise<PingResult> => {
      const { socket, keep } = await open();
      if (expired) {
        socket.destroy();
        throw new CorralError("TIMEOUT", "ping timed out");
      }
      return new Promise<PingResult>((resolve, reject) => {
        conn = new AgentConnection(
          socket,
          "P",
          {
            frame: (frame) => {
              const kv = decodeKvMap(frame.payload);
              const field = (key: string) => requireKey(kv, key, "P").slice(0, MAX_FIELD);
              const result: PingResult = {
                version: field("version"),
                protocol: kv.get("protocol")?.slice(0, MAX_FIELD) ?? "1",
                kernel: field("kernel"),
                uptimeMs: parseUint(field("uptime_ms"), Number.MAX_SAFE_INTEGER, "uptime_ms"),
                hostname: field("hostname"),
              };
              conn?.complete();
              resolve(result);
            },
            failed: reject,
          },
          keep,
        );
        conn.request("ping", []);
      });
    };
    try {
      return await Promise.race([this.idempotent(attempt), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a command; argument errors throw here, everything else rejects `result`. */
  exec(req: ExecRequest): ExecProcess {
    // Stdin frames may still be in flight when the command exits: such an exec gets a
    // connection of its own.
    if (req.stdin !== undefined) return new ExecProcess(this.openFresh, req);
    return new ExecProcess(this.openKeepable, req, this.fallbackFor);
  }

  /** Runs a command to completion, buffering its output (up to maxOutputBytes). */
  async run(req: RunRequest): Promise<RunResult> {
    const cap =
      req.maxOutputBytes === undefined
        ? DEFAULT_MAX_OUTPUT
        : checkPositiveInt("maxOutputBytes", req.maxOutputBytes);
    const proc = this.exec(req);
    let total = 0;
    const collect = (stream: Readable): Buffer[] => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => {
        total += chunk.length;
        if (total > cap) {
          proc.abort(
            new CorralError("AGENT", `command output exceeded ${cap} bytes`, {
              hint: "raise maxOutputBytes, or use exec() to stream the output",
              details: { maxOutputBytes: cap },
            }),
          );
          return;
        }
        chunks.push(chunk);
      });
      return chunks;
    };
    const stdout = collect(proc.stdout);
    const stderr = collect(proc.stderr);
    const result = await proc.result;
    return { ...result, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
  }

  writeFile(
    path: string,
    data: Buffer | Readable,
    opts?: WriteFileOptions,
  ): Promise<{ size: number }> {
    return writeFile(this.connect, path, data, opts);
  }

  /**
   * Sets the guest's wall clock (CLOCK_REALTIME); default: the host's time now. Also the
   * cheapest proof that the agent answers, so it doubles as a readiness probe.
   */
  setTime(timeMs: number = Date.now(), opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs =
      opts.timeoutMs === undefined ? undefined : checkPositiveInt("timeoutMs", opts.timeoutMs);
    return this.idempotent((open) => setGuestTime(open, timeMs, timeoutMs));
  }

  readFile(path: string, opts?: ReadFileOptions): Promise<Buffer> {
    return readFile(this.connect, path, opts);
  }

  /** A TCP connection to `port` inside the guest, carried over one agent stream. */
  tcpConnect(port: number, opts?: TcpConnectOptions): Promise<Duplex> {
    return tcpConnect(this.connect, port, opts);
  }
}
