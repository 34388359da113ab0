/**
 * QEMU's `-netdev stream` framing: every Ethernet frame (no FCS, no vnet header) is preceded by
 * its length as a 4-byte big-endian integer. The peer is a guest, so it is untrusted: a length
 * outside [MIN_FRAME_LENGTH, MAX_FRAME_LENGTH] is a protocol error for that connection, and the
 * decoder never holds more than one frame (header + MAX_FRAME_LENGTH bytes) of input.
 */

/** A destination MAC, a source MAC and an EtherType: anything shorter is not Ethernet. */
export const MIN_FRAME_LENGTH = 14;

/**
 * The largest frame a Linux guest can send on virtio-net: MTU 65535 (the driver's max_mtu, which
 * QEMU 7.2 does not lower) + the 14-byte header = 65549 bytes, measured, plus one 4-byte 802.1Q
 * tag = 65553, rounded to 65536 + 18. It stays below QEMU's NET_BUFSIZE (4096 + 65536), so QEMU
 * accepts every frame the switch forwards; a longer length can only come from a broken or
 * hostile peer (and would make the switch buffer up to 4 GiB per port).
 */
export const MAX_FRAME_LENGTH = 65_554;

export const LENGTH_PREFIX_BYTES = 4;

export class FrameError extends Error {
  readonly length: number;
  /** Complete frames of the same push() that came before the bad length, in order. */
  readonly frames: Buffer[];
  constructor(length: number, frames: Buffer[] = []) {
    super(
      `invalid frame length ${length} (must be ${MIN_FRAME_LENGTH}..${MAX_FRAME_LENGTH} bytes)`,
    );
    this.name = "FrameError";
    this.length = length;
    this.frames = frames;
  }
}

/** The 4-byte length prefix followed by the frame, as one buffer (one write per frame). */
export function encodeFrame(frame: Uint8Array): Buffer {
  if (frame.length < MIN_FRAME_LENGTH || frame.length > MAX_FRAME_LENGTH) {
    throw new FrameError(frame.length);
  }
  const out = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + frame.length);
  out.writeUInt32BE(frame.length, 0);
  out.set(frame, LENGTH_PREFIX_BYTES);
  return out;
}

/**
 * Streaming decoder: feed it chunks as they arrive (any boundaries, any number of frames per
 * chunk); it returns the complete frames. A bad length throws a FrameError (carrying the good
 * frames before it in that chunk); the decoder is then poisoned and keeps throwing: the stream
 * has lost its framing and must be closed.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(LENGTH_PREFIX_BYTES);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private failed: FrameError | undefined;

  /** Bytes of an incomplete frame held (at most LENGTH_PREFIX_BYTES + MAX_FRAME_LENGTH). */
  get bufferedBytes(): number {
    return this.headerFill + this.bodyFill;
  }

  /**
   * Frames completed by this chunk. Returned frames are views of buffers the decoder no longer
   * touches (whole-frame copies, or slices of `chunk` itself when a frame lies entirely in it).
   */
  push(chunk: Uint8Array): Buffer[] {
    if (this.failed !== undefined) throw this.failed;
    const data = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const frames: Buffer[] = [];
    let pos = 0;
    while (pos < data.length) {
      if (this.body === undefined) {
        // Fast path: a whole frame inside this chunk, no copy.
        if (this.headerFill === 0 && data.length - pos >= LENGTH_PREFIX_BYTES) {
          const length = this.check(data.readUInt32BE(pos), frames);
          if (data.length - pos - LENGTH_PREFIX_BYTES >= length) {
            const start = pos + LENGTH_PREFIX_BYTES;
            frames.push(data.subarray(start, start + length));
            pos = start + length;
            continue;
          }
          this.startBody(length);
          pos += LENGTH_PREFIX_BYTES;
          continue;
        }
        const take = Math.min(LENGTH_PREFIX_BYTES - this.headerFill, data.length - pos);
        data.copy(this.header, this.headerFill, pos, pos + take);
        this.headerFill += take;
        pos += take;
        if (this.headerFill < LENGTH_PREFIX_BYTES) break;
        this.headerFill = 0;
        this.startBody(this.check(this.header.readUInt32BE(0), frames));
        continue;
      }
      const take = Math.min(this.body.length - this.bodyFill, data.length - pos);
      data.copy(this.body, this.bodyFill, pos, pos + take);
      this.bodyFill += take;
      pos += take;
      if (this.bodyFill === this.body.length) {
        frames.push(this.body);
        this.body = undefined;
        this.bodyFill = 0;
      }
    }
    return frames;
  }

  private startBody(length: number): void {
    this.body = Buffer.allocUnsafe(length);
    this.bodyFill = 0;
  }

  private check(length: number, frames: Buffer[]): number {
    if (length < MIN_FRAME_LENGTH || length > MAX_FRAME_LENGTH) {
      this.failed = new FrameError(length);
      const error = new FrameError(length, frames);
      this.headerFill = 0;
      this.body = undefined;
      this.bodyFill = 0;
      throw error;
    }
    return length;
  }
}
