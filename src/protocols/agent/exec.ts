/** A command running in the guest: streamed stdout/stderr, stdin, signals, exit status. */
import { Readable } from "node:stream";
import { CorralError } from "../../errors.js";
import { AgentConnection } from "./connection.js";
import { decodeKvMap, type Frame, MAX_PAYLOAD, parseUint } from "./frames.js";
import type { AgentStream, OpenStream } from "./kept.js";
import { pumpReadable, sendChunks } from "./pump.js";
import { signalName, signalNumber } from "./signals.js";
import {
  checkAbsolutePath,
  checkArgv,
  checkEnv,
  checkPositiveInt,
  checkUser,
  invalid,
} from "./validate.js";

export interface ExecRequest {
  argv: string[];
  env?: Record<string, string>;
  /** Absolute; defaults to the user's home directory (or / when it does not exist). */
  cwd?: string;
  /** A name from the guest's /etc/passwd, or "uid[:gid]". Defaults to root. */
  user?: string;
  /** Enforced by the guest: the process group is SIGKILLed and `timedOut` is set. */
  timeoutMs?: number;
  /** Without it the command's stdin is /dev/null. */
  stdin?: Readable | Buffer | string;
}

export interface ExecResult {
  /** Null when the command was killed by a signal. */
  exitCode: number | null;
  /** Signal name such as "SIGKILL", or null when the command exited. */
  signal: string | null;
  timedOut: boolean;
}

/** A few frames of slack: pausing the socket after every 64 KiB frame would cost throughput. */
const STREAM_BUFFER = 256 * 1024;

type Entries = Array<[string, string]>;

function requestEntries(req: ExecRequest): Entries {
  const entries: Entries = checkArgv(req.argv).map((arg) => ["arg", arg]);
  for (const [key, value] of checkEnv(req.env)) entries.push(["env", `${key}=${value}`]);
  if (req.cwd !== undefined) entries.push(["cwd", checkAbsolutePath("cwd", req.cwd)]);
  if (req.user !== undefined) entries.push(["user", checkUser(req.user)]);
  if (req.timeoutMs !== undefined) {
    const timeoutMs = checkPositiveInt("timeoutMs", req.timeoutMs);
    // The agent's limit (2^40 ms, about 35 years).
    if (timeoutMs > 2 ** 40) throw invalid("timeoutMs", "is too large");
    entries.push(["timeout_ms", String(timeoutMs)]);
  }
  if (req.stdin !== undefined) {
    const ok =
      typeof req.stdin === "string" || Buffer.isBuffer(req.stdin) || req.stdin instanceof Readable;
    if (!ok) throw invalid("stdin", "must be a Readable, a Buffer or a string");
    entries.push(["stdin", "1"]);
  }
  const size = entries.reduce((n, [k, v]) => n + Buffer.byteLength(v) + k.length + 2, 64);
  if (size > MAX_PAYLOAD) throw invalid("argv", "argv and env together exceed 1 MiB");
  return entries;
}

function parseExit(frame: Frame): ExecResult {
  const kv = decodeKvMap(frame.payload);
  const code = kv.get("code");
  const signal = kv.get("signal");
  const timeout = kv.get("timeout");
  const known =
    Number(code !== undefined) + Number(signal !== undefined) + Number(timeout !== undefined);
  if (known !== kv.size || (code === undefined) === (signal === undefined)) {
    throw new CorralError("AGENT_PROTOCOL", "malformed exit frame");
  }
  if (timeout !== undefined && timeout !== "1") {
    throw new CorralError("AGENT_PROTOCOL", "malformed timeout flag in exit frame");
  }
  return {
    exitCode: code === undefined ? null : parseUint(code, 255, "exit code"),
    signal: signal === undefined ? null : signalName(parseUint(signal, 64, "exit signal")),
    timedOut: timeout === "1",
  };
}

export class ExecProcess {
  /** Consume both streams (or resume() the one you ignore): a full one pauses the other. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Always await it: it carries every failure of the operation. */
  readonly result: Promise<ExecResult>;

  private conn: AgentConnection | undefined;
  private settled = false;
  private aborted: CorralError | undefined;
  private readonly queuedSignals: number[] = [];
  private readonly sentSignals: number[] = [];
  private retried = false;
  private readonly blocked = new Set<Readable>();
  private resolveResult!: (result: ExecResult) => void;
  private rejectResult!: (err: CorralError) => void;

  /** Validates synchronously, so bad arguments throw from AgentClient.exec itself. */
  /** `fallback`: for a failure before anything ran, a way to start once more (see client). */
  constructor(
    open: OpenStream,
    req: ExecRequest,
    private readonly fallback?: (stream: AgentStream, err: CorralError) => OpenStream | undefined,
  ) {
    const entries = requestEntries(req);
    this.stdout = new Readable({
      highWaterMark: STREAM_BUFFER,
      read: () => this.unblock(this.stdout),
    });
    this.stderr = new Readable({
      highWaterMark: STREAM_BUFFER,
      read: () => this.unblock(this.stderr),
    });
    this.result = new Promise<ExecResult>((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    // A caller that only consumes the streams must not crash the process on failure.
    this.result.catch(() => {});
    void this.start(open, entries, req.stdin);
  }

  /** Sends a signal to the command's process group. A no-op once the command has finished. */
  kill(signal: NodeJS.Signals | number = "SIGTERM"): void {
    const num = signalNumber(signal);
    if (this.settled) return;
    if (this.conn === undefined) {
      this.queuedSignals.push(num);
      return;
    }
    this.sendSignal(num);
  }

  /**
   * Drops the connection: the agent SIGKILLs the whole process group. `result` rejects with
   * `reason` (default: an AGENT error saying the exec was aborted).
   */
  abort(reason?: CorralError): void {
    const err = reason ?? new CorralError("AGENT", "exec aborted by the host");
    if (this.settled) return;
    if (this.conn === undefined) {
      this.aborted = err;
      this.finish(err);
      return;
    }
    this.conn.fail(err);
  }

  private sendSignal(num: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(num);
    this.sentSignals.push(num);
    this.conn?.send("K", payload);
  }

  private async start(open: OpenStream, entries: Entries, stdin: ExecRequest["stdin"]) {
    let stream: AgentStream;
    try {
      stream = await open();
    } catch (err) {
      this.finish(err as CorralError);
      return;
    }
    if (this.aborted !== undefined) {
      stream.socket.destroy();
      return;
    }
    const conn = new AgentConnection(
      stream.socket,
      "12X",
      {
        frame: (frame) => this.onFrame(frame),
        failed: (err) => {
          const again = this.retried ? undefined : this.fallback?.(stream, err);
          if (again === undefined || this.aborted !== undefined) {
            this.finish(err);
            return;
          }
          this.retried = true;
          this.conn = undefined;
          this.queuedSignals.push(...this.sentSignals.splice(0));
          void this.start(again, entries, stdin);
        },
      },
      stream.keep,
    );
    this.conn = conn;
    conn.request("exec", entries);
    for (const num of this.queuedSignals.splice(0)) this.sendSignal(num);
    if (stdin !== undefined) void this.pumpStdin(conn, stdin);
  }

  private onFrame(frame: Frame): void {
    if (frame.type === "X") {
      const result = parseExit(frame);
      this.conn?.complete();
      this.finish(undefined, result);
      return;
    }
    const stream = frame.type === "1" ? this.stdout : this.stderr;
    if (frame.payload.length === 0) return;
    if (!stream.push(frame.payload)) {
      // Stop reading the guest until the consumer asks for more: real backpressure.
      this.blocked.add(stream);
      this.conn?.pause();
    }
  }

  private unblock(stream: Readable): void {
    this.blocked.delete(stream);
    if (this.blocked.size === 0) this.conn?.resume();
  }

  private finish(err: CorralError | undefined, result?: ExecResult): void {
    if (this.settled) return;
    this.settled = true;
    this.stdout.push(null);
    this.stderr.push(null);
    if (err !== undefined) this.rejectResult(err);
    else if (result !== undefined) this.resolveResult(result);
  }

  private async pumpStdin(conn: AgentConnection, stdin: Readable | Buffer | string) {
    try {
      if (!(stdin instanceof Readable)) {
        await sendChunks(conn, typeof stdin === "string" ? Buffer.from(stdin) : stdin);
      } else {
        await pumpReadable(conn, stdin);
      }
      conn.send("E");
    } catch (err) {
      conn.fail(
        new CorralError("AGENT", `reading stdin for the guest failed: ${String(err)}`, {
          cause: err,
        }),
      );
    }
  }
}
