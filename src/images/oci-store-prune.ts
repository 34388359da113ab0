/**
 * Removing pulled images and reclaiming space. Both run under the store lock and spare what a
 * live pull announced (oci-store-refs.ts markPull), so they never race a pull in progress.
 */
import { lstatSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CorralError } from "../errors.js";
import { cachePaths } from "../paths/layout.js";
import { readImageMeta } from "./oci-store-meta.js";
import {
  digestsInUseByPulls,
  matchRefs,
  ociStorePaths,
  type RefsIndex,
  refsOf,
  updateRefs,
} from "./oci-store-refs.js";

export interface RemoveResult {
  /** The references removed. */
  refs: string[];
  digest: string;
  /** True when no reference was left and the rootfs was deleted. */
  deleted: boolean;
  freedBytes: number;
}

export interface PruneResult {
  removed: {
    /** Manifest digests whose rootfs no reference pointed at. */
    images: string[];
    /** Layer blobs no remaining image uses. */
    blobs: string[];
  };
  freedBytes: number;
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Bytes on disk (allocated blocks: rootfs images are sparse), recursively. */
function diskUsage(path: string): number {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return 0;
  }
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    for (const name of listDir(path)) total += diskUsage(join(path, name));
  }
  return total;
}

function removePath(path: string): number {
  const freed = diskUsage(path);
  rmSync(path, { recursive: true, force: true });
  return freed;
}

function stillUsed(index: RefsIndex, digest: string, pulls: Set<string>): boolean {
  return refsOf(index, digest).length > 0 || pulls.has(digest);
}

/**
 * Drops a reference (or every reference of a digest) and deletes the rootfs once no reference
 * points at it. Blobs stay until `pruneOciImages`, so pulling the image again is cheap.
 */
export async function removeOciImage(
  refOrDigest: string,
  /** Manifest digests VMs still boot from: their rootfs stays (it backs their overlays). */
  inUseByVms: ReadonlySet<string> = new Set(),
): Promise<RemoveResult> {
  return updateRefs((index) => {
    const match = matchRefs(index, refOrDigest);
    if (match === undefined) {
      throw new CorralError("IMAGE_NOT_FOUND", `no pulled image "${refOrDigest}"`, {
        hint: "see `corral image ls` for the images on this machine",
      });
    }
    for (const ref of match.refs) delete index.refs[ref];
    let freedBytes = 0;
    const deleted =
      !stillUsed(index, match.digest, digestsInUseByPulls()) && !inUseByVms.has(match.digest);
    if (deleted) freedBytes = removePath(ociStorePaths.imageDir(match.digest));
    return { refs: match.refs, digest: match.digest, deleted, freedBytes };
  });
}

/** Deletes rootfs directories no reference points at, then blobs no remaining image uses. */
export async function pruneOciImages(
  inUseByVms: ReadonlySet<string> = new Set(),
): Promise<PruneResult> {
  return updateRefs((index) => {
    const pulls = new Set([...digestsInUseByPulls(), ...inUseByVms]);
    const result: PruneResult = { removed: { images: [], blobs: [] }, freedBytes: 0 };
    for (const name of listDir(ociStorePaths.root())) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const digest = `sha256:${name}`;
      if (stillUsed(index, digest, pulls)) continue;
      result.freedBytes += removePath(join(ociStorePaths.root(), name));
      result.removed.images.push(digest);
    }

    const usedBlobs = new Set(pulls);
    for (const entry of Object.values(index.refs)) {
      const meta = readImageMeta(entry.digest);
      // Without the record we cannot tell which blobs the image needs: keep them all.
      if (meta === undefined) return result;
      for (const d of meta.layerDigests) usedBlobs.add(d);
    }
    for (const algorithm of listDir(cachePaths.blobs())) {
      const dir = join(cachePaths.blobs(), algorithm);
      for (const hex of listDir(dir)) {
        // Dot files are downloads in progress (protocols/oci/blob-store.ts).
        if (hex.startsWith(".")) continue;
        const digest = `${algorithm}:${hex}`;
        if (usedBlobs.has(digest)) continue;
        result.freedBytes += removePath(join(dir, hex));
        result.removed.blobs.push(digest);
      }
    }
    return result;
  });
}
