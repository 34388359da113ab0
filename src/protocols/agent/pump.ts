/** Streams caller data to the guest as frames, honouring the socket's backpressure. */
import type { Readable } from "node:stream";
import type { AgentConnection } from "./connection.js";
import { CHUNK_SIZE } from "./frames.js";

/** Sends data as 'I' frames, waiting whenever the socket is full. */
export async function sendChunks(conn: AgentConnection, data: Buffer, type = "I"): Promise<number> {
  let sent = 0;
  for (let off = 0; off < data.length && !conn.finished; off += CHUNK_SIZE) {
    const chunk = data.subarray(off, off + CHUNK_SIZE);
    sent += chunk.length;
    if (!conn.send(type, chunk)) await conn.drain();
  }
  return sent;
}

/**
 * Forwards a caller's stream without destroying it when the command ends first: it may be
 * process.stdin, which outlives one exec.
 */
export function pumpReadable(conn: AgentConnection, src: Readable, type = "I"): Promise<number> {
  let sent = 0;
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      src.off("data", onData);
      src.off("end", onEnd);
      src.off("error", onError);
    };
    const onData = (chunk: Buffer | string) => {
      const data = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      sent += data.length;
      let ok = true;
      for (let off = 0; off < data.length; off += CHUNK_SIZE) {
        ok = conn.send(type, data.subarray(off, off + CHUNK_SIZE)) && ok;
      }
      if (!ok && !conn.finished) {
        src.pause();
        void conn.drain().then(() => {
          if (!conn.finished) src.resume();
        });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve(sent);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      src.pause();
      resolve(sent);
    };
    src.on("data", onData);
    src.on("end", onEnd);
    src.on("error", onError);
    // Over, not the socket's close: a kept connection stays open after the operation.
    void conn.whenOver.then(onClose);
  });
}
