/**
 * Host side of the guest agent protocol (docs/agent-protocol.md). Knows nothing of VMs or
 * vsock: `connect` hands it a fresh connected stream per operation.
 */
import type { Duplex, Readable } from "node:stream";
import { CorralError } from "../../errors.js";
import { setGuestTime } from "./clock.js";
import { AgentConnection, type Connect, openStream } from "./connection.js";
import { ExecProcess, type ExecRequest, type ExecResult } from "./exec.js";
import { type ReadFileOptions, readFile, type WriteFileOptions, writeFile } from "./files.js";
import { decodeKvMap, parseUint, requireKey } from "./frames.js";
import { type TcpConnectOptions, tcpConnect } from "./tcp.js";
import { checkPositiveInt } from "./validate.js";

export type { Connect } from "./connection.js";
export type { ExecRequest, ExecResult } from "./exec.js";
export { ExecProcess } from "./exec.js";
export type { ReadFileOptions, WriteFileOptions } from "./files.js";
export type { TcpConnectOptions } from "./tcp.js";

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

export class AgentClient {
  constructor(private readonly connect: Connect) {}

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
    const attempt = async (): Promise<PingResult> => {
      const socket = await openStream(this.connect);
      if (expired) {
        socket.destroy();
        throw new CorralError("TIMEOUT", "ping timed out");
      }
      return new Promise<PingResult>((resolve, reject) => {
        conn = new AgentConnection(socket, "P", {
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
        });
        conn.request("ping", []);
      });
    };
    try {
      return await Promise.race([attempt(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts a command; argument errors throw here, everything else rejects `result`. */
  exec(req: ExecRequest): ExecProcess {
    return new ExecProcess(this.connect, req);
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

  /** Sets the guest's wall clock (CLOCK_REALTIME); default: the host's time now. */
  setTime(timeMs: number = Date.now()): Promise<void> {
    return setGuestTime(this.connect, timeMs);
  }

  readFile(path: string, opts?: ReadFileOptions): Promise<Buffer> {
    return readFile(this.connect, path, opts);
  }

  /** A TCP connection to `port` inside the guest, carried over one agent stream. */
  tcpConnect(port: number, opts?: TcpConnectOptions): Promise<Duplex> {
    return tcpConnect(this.connect, port, opts);
  }
}
