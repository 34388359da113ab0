/**
 * QEMU's migration stream to a file, hashed on the way: QEMU sends to a `unix:` socket and
 * corral writes what arrives (QEMU 7.2 has no `file:` URI, and no shell (`exec:cat`) may ever
 * see a path). Restores hand QEMU the file itself (base/hash.ts hashes it meanwhile).
 */
import { createHash } from "node:crypto";
import { closeSync, createWriteStream, fsyncSync, openSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { StreamDigest } from "../../base/hash.js";

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
