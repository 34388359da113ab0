/**
 * One agent operation over one connection: frames in and out, guest failures, and the one
 * place that decides when the operation is over (a terminal frame, an error, or a close).
 */
import type { Duplex } from "node:stream";
import { asCorralError, CorralError } from "../../errors.js";
import {
  decodeKvMap,
  encodeFrame,
  encodeKv,
  type Frame,
  FrameDecoder,
  type KeyValues,
  PROTOCOL_VERSION,
  requireKey,
} from "./frames.js";

export type Connect = () => Promise<Duplex>;

export interface FrameHandler {
  /** Called for each frame except 'F'; may throw to fail the operation. */
  frame(frame: Frame): void;
  /** Called once if the operation fails before complete() was called. */
  failed(err: CorralError): void;
}

const GUEST_CODE = /^[A-Z][A-Z0-9_]{0,31}$/;
const MAX_MESSAGE = 4096;

function hintFor(code: string, stage: string | undefined): string | undefined {
  if (stage === "exec" && code === "ENOENT") {
    return "check the command exists in the guest image and is on PATH";
  }
  if (stage === "exec" && code === "EACCES") return "check the file in the guest is executable";
  if (stage === "cwd") return "check the working directory exists in the guest";
  if (code === "NO_SUCH_USER") return "use a user from the guest's /etc/passwd, or uid[:gid]";
  if (code === "BAD_REQUEST") {
    return "corral and the guest agent disagree; rebuild the guest image with this corral";
  }
  if (code === "ENOENT")
    return "check the path exists in the guest (parent directories are not created)";
  if (code === "EACCES" || code === "EPERM")
    return "check permissions in the guest, or pass a user";
  return undefined;
}

/** Turns an 'F' frame into the error the caller sees. */
export function guestFailure(frame: Frame): CorralError {
  const kv = decodeKvMap(frame.payload);
  const code = requireKey(kv, "code", "F");
  if (!GUEST_CODE.test(code)) {
    throw new CorralError("AGENT_PROTOCOL", "guest failure code is malformed");
  }
  const message = requireKey(kv, "message", "F").slice(0, MAX_MESSAGE);
  const stage = kv.get("stage");
  return new CorralError("AGENT", `guest agent: ${message}`, {
    hint: hintFor(code, stage),
    details: stage === undefined ? { guestCode: code } : { guestCode: code, stage },
  });
}

export async function openStream(connect: Connect): Promise<Duplex> {
  try {
    return await connect();
  } catch (err) {
    if (err instanceof CorralError) throw err;
    throw new CorralError("AGENT", `cannot connect to the guest agent: ${String(err)}`, {
      cause: err,
    });
  }
}

export class AgentConnection {
  private readonly decoder: FrameDecoder;
  private over = false;
  /** Frames other than the request went out: the agent may not have read them all. */
  private sentMore = false;
  private handedOff = false;
  private readonly detach: () => void;
  private markOver: () => void = () => {};
  /** Settles when the operation is over (completed or failed), whatever the socket does. */
  readonly whenOver: Promise<void> = new Promise((resolve) => {
    this.markOver = resolve;
  });

  /**
   * With `keep`, the request asks the agent to keep the connection (`keep=1`) and complete()
   * hands the socket to `keep` instead of closing it.
   */
  constructor(
    readonly socket: Duplex,
    allowed: string,
    private readonly handler: FrameHandler,
    private readonly keep?: (socket: Duplex) => void,
  ) {
    this.decoder = new FrameDecoder(`${allowed}F`);
    const onData = (chunk: Buffer) => this.onData(chunk);
    const onEnd = () =>
      this.fail(new CorralError("AGENT", "the guest agent closed the connection mid-operation"));
    const onClose = () =>
      this.fail(new CorralError("AGENT", "the connection to the guest agent closed mid-operation"));
    const onError = (err: Error) =>
      this.fail(
        new CorralError("AGENT", `connection to the guest agent failed: ${err.message}`, {
          cause: err,
        }),
      );
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onClose);
    socket.on("error", onError);
    this.detach = () => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onClose);
      socket.off("error", onError);
    };
    socket.resume();
  }

  get finished(): boolean {
    return this.over;
  }

  /** Sends the request frame that starts every operation. */
  request(op: string, entries: KeyValues): void {
    const keep: KeyValues = this.keep === undefined ? [] : [["keep", "1"]];
    const payload = encodeKv([["op", op], ["version", PROTOCOL_VERSION], ...keep, ...entries]);
    this.send("R", payload);
  }

  /** Returns false when the caller should wait for drain() before sending more. */
  send(type: string, payload?: Buffer): boolean {
    if (this.over) return true;
    if (type !== "R") this.sentMore = true;
    return this.socket.write(encodeFrame(type, payload));
  }

  /** Resolves once the socket can take more data, or the operation is over. */
  drain(): Promise<void> {
    if (this.over) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.over) this.socket.resume();
  }

  /**
   * The operation succeeded: keep the connection for the next one, or drop it (the agent
   * treats EOF as "host done"). Bytes beyond the terminal frame mean it cannot be reused.
   */
  complete(): void {
    if (this.over) return;
    this.over = true;
    this.markOver();
    // Stdin, end-of-stdin or signal frames the agent stopped reading when the command
    // exited would be taken for the next request: such a connection is not reused.
    if (
      this.keep !== undefined &&
      !this.sentMore &&
      this.decoder.pending === 0 &&
      !this.socket.destroyed
    ) {
      this.detach();
      this.handedOff = true;
      this.keep(this.socket);
      return;
    }
    this.socket.destroy();
  }

  fail(err: unknown): void {
    if (this.over) return;
    this.over = true;
    this.markOver();
    this.socket.destroy();
    this.handler.failed(asCorralError(err, "AGENT"));
  }

  private onData(chunk: Buffer): void {
    if (this.over) return;
    try {
      const frames = this.decoder.push(chunk);
      for (const [i, frame] of frames.entries()) {
        if (frame.type === "F") {
          this.fail(guestFailure(frame));
        } else {
          this.handler.frame(frame);
        }
        if (this.over) {
          // Anything after the terminal frame: the agent is not where a reuse expects it.
          if (this.handedOff && i < frames.length - 1) this.socket.destroy();
          return;
        }
      }
    } catch (err) {
      this.fail(err);
    }
  }
}
