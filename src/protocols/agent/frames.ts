/**
 * Frame codec of the guest agent protocol (docs/agent-protocol.md): 1 byte type, 4 bytes
 * big-endian payload length, payload. Everything the guest sends is untrusted, so the decoder
 * checks every frame against what the current operation may receive.
 */
import { CorralError } from "../../errors.js";

/** Largest payload either side accepts. */
export const MAX_PAYLOAD = 1024 * 1024;
/** Data chunk size; the agent never sends larger data frames, and neither does the host. */
export const CHUNK_SIZE = 64 * 1024;
export const PROTOCOL_VERSION = "1";

const HEADER = 5;

export interface Frame {
  type: string;
  payload: Buffer;
}

function protocolError(message: string): CorralError {
  return new CorralError("AGENT_PROTOCOL", message, {
    hint: "the guest agent sent something corral does not understand; is the guest image's agent out of date?",
  });
}

export function encodeFrame(type: string, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (type.length !== 1 || type.charCodeAt(0) > 0x7f) {
    throw new CorralError("INTERNAL", `bad frame type ${JSON.stringify(type)}`);
  }
  if (payload.length > MAX_PAYLOAD) {
    throw new CorralError("INTERNAL", `frame payload of ${payload.length} bytes is too large`);
  }
  const header = Buffer.allocUnsafe(HEADER);
  header.write(type, 0, "latin1");
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

export type KeyValues = ReadonlyArray<readonly [string, string]>;

/** Encodes NUL-terminated key=value strings; callers validate user input beforehand. */
export function encodeKv(entries: KeyValues): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of entries) {
    if (!/^[a-z_]+$/.test(key) || value.includes("\0")) {
      throw new CorralError("INTERNAL", `cannot encode key=value entry for ${JSON.stringify(key)}`);
    }
    parts.push(Buffer.from(`${key}=${value}\0`, "utf8"));
  }
  return Buffer.concat(parts);
}

/** Decodes a key=value list from the guest. Keys must be lowercase identifiers. */
export function decodeKv(payload: Buffer): Array<[string, string]> {
  if (payload.length === 0) return [];
  if (payload[payload.length - 1] !== 0)
    throw protocolError("key=value list is not NUL-terminated");
  const out: Array<[string, string]> = [];
  let start = 0;
  while (start < payload.length) {
    const end = payload.indexOf(0, start);
    const entry = payload.subarray(start, end);
    start = end + 1;
    const eq = entry.indexOf(0x3d);
    if (eq <= 0) throw protocolError("malformed key=value entry");
    const key = entry.subarray(0, eq).toString("latin1");
    if (!/^[a-z_][a-z0-9_]{0,31}$/.test(key))
      throw protocolError("malformed key in key=value list");
    out.push([key, entry.subarray(eq + 1).toString("utf8")]);
  }
  return out;
}

/** Decodes a key=value list where each key appears at most once. */
export function decodeKvMap(payload: Buffer): Map<string, string> {
  const map = new Map<string, string>();
  for (const [key, value] of decodeKv(payload)) {
    if (map.has(key)) throw protocolError(`duplicate key ${JSON.stringify(key)}`);
    map.set(key, value);
  }
  return map;
}

export function requireKey(map: Map<string, string>, key: string, frame: string): string {
  const value = map.get(key);
  if (value === undefined) throw protocolError(`'${frame}' frame lacks ${key}`);
  return value;
}

/** A decimal integer in [0, max]; anything else from the guest is a protocol error. */
export function parseUint(value: string, max: number, what: string): number {
  if (!/^[0-9]{1,16}$/.test(value)) throw protocolError(`${what} is not a number`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n > max) throw protocolError(`${what} is out of range`);
  return n;
}

/**
 * Incremental decoder. `allowed` lists the frame types the current operation may receive;
 * it can be narrowed as the operation progresses.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private length = 0;
  allowed: string;
  private readonly maxPayload: number;

  constructor(allowed: string, maxPayload = MAX_PAYLOAD) {
    this.allowed = allowed;
    this.maxPayload = maxPayload;
  }

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.length;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.length >= HEADER) {
      const header = this.peek(HEADER);
      const type = String.fromCharCode(header[0] ?? 0);
      if (!this.allowed.includes(type)) {
        throw protocolError(`unexpected frame type 0x${(header[0] ?? 0).toString(16)}`);
      }
      const size = header.readUInt32BE(1);
      if (size > this.maxPayload) throw protocolError(`frame of ${size} bytes is too large`);
      if (this.length < HEADER + size) break;
      this.consume(HEADER);
      frames.push({ type, payload: this.consume(size) });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  private consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.length -= n;
    return out;
  }
}
