/**
 * Moves a VMM's migration stream between a file and a unix socket, hashing it on the way:
 * QEMU saves to and restores from `unix:` sockets, so no shell (`exec:cat`) ever sees a path.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  createWriteStream,
  fsyncSync,
  openSync,
  rmSync,
} from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError } from "../errors.js";

export interface StreamDigest {
  sha256: string;
  size: number;
}

function hasher() {
  const hash = createHash("sha256");
  let size = 0;
  const transform = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  return { transform, digest: (): StreamDigest => ({ sha256: hash.digest("hex"), size }) };
}

/**
 * Listens on `socketPath` (0600) for the VMM's one connection and writes what it sends to
 * `file` (fsynced). `done` resolves when the VMM closed the stream.
 */
export async function receiveToFile(
  socketPath: string,
  file: string,
): Promise<{ done: Promise<StreamDigest>; close: () => void }> {
  rmSync(socketPath, { force: true });
  let resolveConn: (s: Socket) => void = () => {};
  const connection = new Promise<Socket>((resolve) => {
    resolveConn = resolve;
  });
  const server = createServer((socket) => {
    server.close();
    resolveConn(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => resolve());
  });
  const done = (async () => {
    const socket = await connection;
    const { transform, digest } = hasher();
    await pipeline(socket, transform, createWriteStream(file, { mode: 0o600 }));
    const fd = openSync(file, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return digest();
  })();
  done.catch(() => {});
  return {
    done,
    close: () => {
      server.close();
      rmSync(socketPath, { force: true });
    },
  };
}

/** Connects to the VMM's incoming socket (retrying while it starts) and sends `file`. */
export async function sendFile(
  socketPath: string,
  file: string,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<StreamDigest> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let socket: Socket | undefined;
  while (socket === undefined) {
    options.signal?.throwIfAborted();
    socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(socketPath);
      s.once("connect", () => resolve(s));
      s.once("error", () => resolve(undefined));
    });
    if (socket === undefined) {
      if (Date.now() > deadline) {
        throw new CorralError("SNAPSHOT", "the VMM did not open its incoming migration socket");
      }
      await sleep(5);
    }
  }
  const { transform, digest } = hasher();
  await pipeline(createReadStream(file), transform, socket);
  return digest();
}
