import { mkdir, stat } from "node:fs/promises";
import type { ProgressListener } from "../../base/progress.js";
import { CorralError } from "../../errors.js";
import { cachePaths } from "../../paths/layout.js";
import { downloadVerified, type RetryOptions } from "./http.js";
import { loadIndex } from "./index.js";
import type { DebPackage } from "./packages.js";

export interface FetchDebOptions {
  suite: string;
  name: string;
  /** Follow a metapackage's Depends to the first dependency matching this (see PackageIndex.resolve). */
  followDepends?: RegExp;
  refresh?: boolean;
  onProgress?: ProgressListener;
  mirror?: string;
  retry?: RetryOptions;
}

export interface FetchedDeb {
  path: string;
  /** The concrete package fetched (differs from the name asked for with followDepends). */
  name: string;
  version: string;
  sha256: string;
  filename: string;
  size: number;
  /** Whether the archive's Release signature was checked (false when gpgv or the keyring is missing). */
  signatureVerified: boolean;
}

function safePoolPath(pkg: DebPackage): string {
  const f = pkg.filename;
  if (f.startsWith("/") || f.split("/").includes("..") || !/^[\w./+~-]+$/.test(f)) {
    throw new CorralError(
      "DOWNLOAD",
      `refusing suspicious Filename in index: ${JSON.stringify(f)}`,
    );
  }
  if (!/^[0-9a-f]{64}$/.test(pkg.sha256)) {
    throw new CorralError("DOWNLOAD", `bad SHA256 for ${pkg.name} in the index`);
  }
  return f;
}

/**
 * Resolves a package in the suite's verified index and returns its .deb from the cache,
 * downloading and verifying it first when needed. The cache is content-addressed by SHA-256,
 * so a cached file of the right size is the right file (only complete, verified downloads are
 * ever renamed into it).
 */
export async function fetchDeb(opts: FetchDebOptions): Promise<FetchedDeb> {
  const { mirror, index, meta } = await loadIndex({
    suite: opts.suite,
    ...(opts.refresh === undefined ? {} : { refresh: opts.refresh }),
    ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
    ...(opts.mirror === undefined ? {} : { mirror: opts.mirror }),
    ...(opts.retry === undefined ? {} : { retry: opts.retry }),
  });
  const pkg = index.resolve(opts.name, opts.followDepends);
  const filename = safePoolPath(pkg);
  const path = cachePaths.deb(pkg.sha256);
  const result: FetchedDeb = {
    path,
    name: pkg.name,
    version: pkg.version,
    sha256: pkg.sha256,
    filename,
    size: pkg.size,
    signatureVerified: meta.signatureVerified,
  };
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile() && existing.size === pkg.size) return result;

  await mkdir(cachePaths.debs(), { recursive: true });
  await downloadVerified({
    url: `${mirror}/${filename}`,
    dest: path,
    sha256: pkg.sha256,
    size: pkg.size,
    label: pkg.name,
    ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
    ...(opts.retry === undefined ? {} : { retry: opts.retry }),
  });
  return result;
}
