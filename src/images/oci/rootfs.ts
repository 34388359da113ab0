/**
 * OCI image layers -> a cached ext4 root filesystem, keyed by the manifest digest (the
 * manifest pins every layer, so the same digest always yields the same tree). A failed
 * build leaves nothing behind: the staging tree and the temp image are removed.
 *
 * Pipeline: apply.ts unpacks the layers into a staging directory under the cache, ext4.ts
 * runs `mke2fs -d` on it, then one debugfs pass for what staging cannot hold (fixups.ts).
 *
 * Not root: the image comes out the same (owners, modes incl. setuid/setgid, devices,
 * fifos, xattrs), because owners and modes are recorded during staging and written by
 * debugfs; it costs one debugfs pass with ~2 commands per inode (measured ~+0.2 s for 3000
 * files). Only file names containing a newline cannot be fixed up that way and fail the build.
 * Root or not: device nodes that are hardlinked become separate nodes; SCHILY.xattr values
 * that are not valid UTF-8 are dropped with a warning (tar-stream decodes PAX as UTF-8).
 * A process killed mid-build may leave a `tmp/oci-rootfs-*` directory in the cache.
 */
import { mkdir, mkdtemp, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError } from "../../errors.js";
import { cachePaths } from "../../paths/layout.js";
import { applyLayers } from "./apply.js";
import { buildExt4 } from "./ext4.js";
import type { LayerBlob } from "./layers.js";
import type { OwnershipMode } from "./tree.js";

export const ROOTFS_FILE = "rootfs.ext4";

export interface RootfsRequest {
  manifestDigest: string;
  /** Lowest layer first, as in the manifest. */
  layers: readonly LayerBlob[];
  onProgress?: ProgressListener;
  /** Tests force "record" to exercise the non-root path as root. */
  ownership?: OwnershipMode;
  /** Stops unpacking or the ext4 build; nothing is left behind (CANCELLED). */
  signal?: AbortSignal;
}

export interface RootfsResult {
  path: string;
  sizeBytes: number;
  cached: boolean;
  /** Parts of entries that could not be kept (see apply.ts); empty when cached. */
  warnings: string[];
}

function digestHex(digest: string): string {
  const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (match?.[1] === undefined) {
    throw new CorralError("INVALID_ARGUMENT", `not a sha256 manifest digest: ${digest}`);
  }
  return match[1];
}

export function rootfsPath(manifestDigest: string): string {
  return join(cachePaths.image("oci", digestHex(manifestDigest)), ROOTFS_FILE);
}

async function sizeIfPresent(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

export async function rootfsFromLayers(request: RootfsRequest): Promise<RootfsResult> {
  const path = rootfsPath(request.manifestDigest);
  const cachedSize = await sizeIfPresent(path);
  if (cachedSize !== undefined) return { path, sizeBytes: cachedSize, cached: true, warnings: [] };

  const onProgress = request.onProgress ?? noProgress;
  const dir = join(path, "..");
  await mkdir(dir, { recursive: true });
  await mkdir(cachePaths.tmp(), { recursive: true });
  // Staged under the cache, not /tmp: often a small tmpfs, and images can be gigabytes.
  const staging = await mkdtemp(join(cachePaths.tmp(), "oci-rootfs-"));
  try {
    const staged = await applyLayers(request.layers, staging, {
      onProgress,
      ownership: request.ownership,
      signal: request.signal,
    });
    const built = await buildExt4(staged.dir, path, {
      fixups: staged.fixups,
      ownership: staged.ownership,
      onProgress,
      signal: request.signal,
    });
    return { path, sizeBytes: built.sizeBytes, cached: false, warnings: staged.warnings };
  } catch (err) {
    // Only removes the image directory when empty: a concurrent build may have succeeded.
    await rmdir(dir).catch(() => {});
    throw err;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
