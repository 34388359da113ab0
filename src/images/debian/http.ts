import { createHash } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { fetch } from "undici";
import { tempSibling } from "../../base/atomic.js";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError, isCorralError } from "../../errors.js";

export interface RetryOptions {
  /** Attempts in all (default 3). */
  attempts?: number;
  /** First backoff delay; doubled each retry (default 500 ms). */
  backoffMs?: number;
}

class RetryableError extends Error {}

const PROGRESS_STEP = 1 << 20;

async function withRetries<T>(url: string, opts: RetryOptions, fn: () => Promise<T>): Promise<T> {
  const attempts = opts.attempts ?? 3;
  let delay = opts.backoffMs ?? 500;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (err) {
      // Only transient failures (5xx, connection trouble) are worth another try.
      if (isCorralError(err)) throw err;
      last = err;
      if (i + 1 < attempts) {
        await sleep(delay);
        delay *= 2;
      }
    }
  }
  const reason = last instanceof Error ? last.message : String(last);
  throw new CorralError(
    "DOWNLOAD",
    `downloading ${url} failed after ${attempts} tries: ${reason}`,
    {
      cause: last,
      hint: "check the network, or set CORRAL_DEBIAN_MIRROR to a reachable Debian mirror",
    },
  );
}

async function get(url: string) {
  let res: Awaited<ReturnType<typeof fetch>>;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new RetryableError(err instanceof Error ? `${err.message}` : String(err), { cause: err });
  }
  if (res.status >= 500) {
    await res.body?.cancel();
    throw new RetryableError(`HTTP ${res.status}`);
  }
  return res;
}

/** GETs a small file into memory; undefined on 404 (optional files such as InRelease). */
export async function fetchOptional(
  url: string,
  opts: RetryOptions = {},
): Promise<Buffer | undefined> {
  return withRetries(url, opts, async () => {
    const res = await get(url);
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new CorralError("DOWNLOAD", `GET ${url}: HTTP ${res.status}`);
    }
    try {
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw new RetryableError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  });
}

export async function fetchRequired(url: string, opts: RetryOptions = {}): Promise<Buffer> {
  const body = await fetchOptional(url, opts);
  if (body === undefined) throw new CorralError("DOWNLOAD", `GET ${url}: not found (HTTP 404)`);
  return body;
}

export interface VerifiedDownload {
  url: string;
  /** Final path; the file appears there only once complete and verified. */
  dest: string;
  sha256: string;
  size: number;
  label: string;
  onProgress?: ProgressListener;
  retry?: RetryOptions;
}

/**
 * Streams `url` into a temp file next to `dest` while hashing it, checks size and SHA-256,
 * fsyncs, then renames. On any failure the temp file is removed, so `dest` is either absent
 * or exactly the expected bytes.
 */
export async function downloadVerified(d: VerifiedDownload): Promise<void> {
  const onProgress = d.onProgress ?? noProgress;
  await withRetries(d.url, d.retry ?? {}, async () => {
    const tmp = tempSibling(d.dest);
    try {
      const res = await get(d.url);
      if (res.status !== 200 || res.body === null) {
        await res.body?.cancel();
        throw new CorralError("DOWNLOAD", `GET ${d.url}: HTTP ${res.status}`);
      }
      const hash = createHash("sha256");
      const fh = await open(tmp, "w", 0o644);
      let received = 0;
      let reported = 0;
      try {
        try {
          for await (const chunk of res.body) {
            hash.update(chunk);
            await fh.write(chunk);
            received += chunk.length;
            if (received > d.size) break;
            if (received - reported >= PROGRESS_STEP) {
              reported = received;
              onProgress({ phase: "download", label: d.label, current: received, total: d.size });
            }
          }
        } catch (err) {
          throw new RetryableError(err instanceof Error ? err.message : String(err), {
            cause: err,
          });
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (received !== d.size) {
        throw new CorralError(
          "CHECKSUM_MISMATCH",
          `${d.label}: expected ${d.size} bytes from ${d.url}, got ${received}${received > d.size ? "+" : ""}`,
          { hint: "the mirror may be mid-sync; retry later or refresh the index with --refresh" },
        );
      }
      const actual = hash.digest("hex");
      if (actual !== d.sha256) {
        throw new CorralError(
          "CHECKSUM_MISMATCH",
          `${d.label}: SHA-256 of ${d.url} is ${actual}, the index says ${d.sha256}`,
          { hint: "the mirror may be mid-sync or tampered with; retry later or refresh the index" },
        );
      }
      await rename(tmp, d.dest);
      onProgress({ phase: "download", label: d.label, current: d.size, total: d.size, done: true });
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  });
}
