/**
 * A VMM's migration stream and its hash. Saves: QEMU sends to a `unix:` socket, which corral
 * writes to a file and hashes on the way. Restores: QEMU reads the file itself from an
 * inherited descriptor (`fd:3`) while corral hashes the same open file. No shell
 * (`exec:cat`) ever sees a path.
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
import { createServer, type Socket } from "node:net";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

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

/**
 * Hashes a file from an open descriptor with positional reads (the descriptor's offset, which
 * a VMM reading the same open file uses, is left alone), then closes it.
 */
export async function hashDescriptor(fd: number, signal?: AbortSignal): Promise<StreamDigest> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream("", {
    fd,
    start: 0,
    autoClose: true,
    highWaterMark: 1024 * 1024,
    signal,
  })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}
