/**
 * The content-addressed blob cache: `cachePaths.blob(digest)`. A blob appears there only
 * complete and verified: it is streamed into a uniquely named temp file in the same
 * directory while hashing, its size and digest checked, fsynced, then renamed into place.
 * Concurrent pulls of one blob each write their own temp file; the renames are atomic and
 * the content identical, so the last one wins harmlessly.
 *
 * Resume policy: an interrupted download restarts from zero (no Range requests). It is
 * always correct, needs no trust in a half-written file, and layers are rarely big enough
 * for the difference to matter.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError, cancelled, throwIfCancelled } from "../../errors.js";
import { cachePaths } from "../../paths/layout.js";
import { digestHasher, parseDigest, shortDigest } from "./digest.js";
import type { Descriptor } from "./manifest.js";
import { TransientError } from "./retry.js";

const PROGRESS_STEP = 512 * 1024;
/** A temp file untouched this long belongs to a pull that died; an active one is written constantly. */
const STALE_TEMP_MS = 15 * 60 * 1000;

export function blobPath(digest: string): string {
  parseDigest(digest);
  return cachePaths.blob(digest);
}

async function hashFile(path: string, digest: string): Promise<string> {
  const { algorithm } = parseDigest(digest);
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `${algorithm}:${hash.digest("hex")}`;
}

/**
 * The cached path if a blob with the descriptor's size (and, with `verify`, digest) is
 * there; a blob that fails the check is removed so it gets downloaded again.
 */
export async function cachedBlob(desc: Descriptor, verify: boolean): Promise<string | undefined> {
  const path = blobPath(desc.digest);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return undefined;
  }
  if (size === desc.size && (!verify || (await hashFile(path, desc.digest)) === desc.digest)) {
    return path;
  }
  await rm(path, { force: true });
  return undefined;
}

/**
 * `.<hex>.<pid>-<random>.tmp`: the writer's pid in the name lets the next pull remove the
 * temp files of pulls that were killed at once, not only once they are old.
 */
function ownTemp(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`,
  );
}

function writerAlive(name: string): boolean {
  const pid = /\.(\d+)-[0-9a-f]+\.tmp$/.exec(name)?.[1];
  if (pid === undefined) return true;
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes temp files of this blob left behind by pulls that were killed. */
export async function removeStaleTemps(digest: string, now = Date.now()): Promise<void> {
  const path = blobPath(digest);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    const temp = join(dirname(path), name);
    try {
      if (!writerAlive(name) || now - (await stat(temp)).mtimeMs > STALE_TEMP_MS) {
        await rm(temp, { force: true });
      }
    } catch {
      // Another pull finished or removed it meanwhile.
    }
  }
}

export interface WriteBlobOptions {
  desc: Descriptor;
  /** What the download is, for errors (`layer sha256:... of 127.0.0.1:5000/app`). */
  what: string;
  onProgress?: ProgressListener;
  /** Aborting stops the write and removes the temp file (CANCELLED). */
  signal?: AbortSignal;
}

/**
 * Streams `body` into the cache. A body cut short is a TransientError (the caller retries
 * from zero); wrong bytes are a CHECKSUM_MISMATCH; an abort is CANCELLED. Whichever, nothing
 * is left behind.
 */
export async function writeBlob(
  body: AsyncIterable<Uint8Array>,
  opts: WriteBlobOptions,
): Promise<string> {
  const { desc, what } = opts;
  const onProgress = opts.onProgress ?? noProgress;
  const label = shortDigest(desc.digest);
  const path = blobPath(desc.digest);
  await mkdir(dirname(path), { recursive: true });
  const tmp = ownTemp(path);
  const hash = digestHasher(desc.digest);
  let received = 0;
  let reported = 0;
  try {
    const fh = await open(tmp, "wx", 0o644);
    try {
      try {
        for await (const chunk of body) {
          throwIfCancelled(opts.signal);
          received += chunk.length;
          if (received > desc.size) break;
          hash.update(chunk);
          await fh.write(chunk);
          if (received - reported >= PROGRESS_STEP) {
            reported = received;
            onProgress({ phase: "pull", label, current: received, total: desc.size });
          }
        }
      } catch (err) {
        if (opts.signal?.aborted === true) throw cancelled(opts.signal);
        const reason = err instanceof Error ? err.message : String(err);
        throw new TransientError(
          `${what}: download interrupted after ${received} bytes: ${reason}`,
          {
            cause: err,
          },
        );
      }
      if (received < desc.size) {
        throw new TransientError(`${what}: the registry sent ${received} of ${desc.size} bytes`);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (received > desc.size) {
      throw new CorralError(
        "CHECKSUM_MISMATCH",
        `${what}: the registry sent more than the ${desc.size} bytes the manifest announces`,
        { hint: "the registry or a proxy is serving wrong content; nothing was cached" },
      );
    }
    const actual = `${parseDigest(desc.digest).algorithm}:${hash.digest("hex")}`;
    if (actual !== desc.digest) {
      throw new CorralError(
        "CHECKSUM_MISMATCH",
        `${what}: the content's digest is ${actual}, expected ${desc.digest}`,
        { hint: "the registry or a proxy is serving wrong content; nothing was cached" },
      );
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  onProgress({ phase: "pull", label, current: desc.size, total: desc.size, done: true });
  return path;
}
