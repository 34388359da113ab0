/** A command's output collected in memory, up to a bound per stream (the rest is drained). */
import type { Readable } from "node:stream";

export interface Collected {
  text(): string;
  /** True when the stream had more than the bound. */
  truncated(): boolean;
}

export function collect(stream: Readable, maxBytes: number): Collected {
  const chunks: Buffer[] = [];
  let kept = 0;
  let dropped = false;
  stream.on("data", (chunk: Buffer) => {
    const room = maxBytes - kept;
    if (room <= 0) {
      dropped = true;
      return;
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (part.length < chunk.length) dropped = true;
    chunks.push(part);
    kept += part.length;
  });
  return {
    text: () => Buffer.concat(chunks).toString("utf8"),
    truncated: () => dropped,
  };
}
