/**
 * Walks the staging tree once: the entries the fixup script needs and the space and inodes
 * the ext4 image must hold, counted the way ext4 stores them (4 KiB blocks, 256-byte inodes,
 * hardlinks once).
 */
import type { Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

export const BLOCK_SIZE = 4096;
export const INODE_SIZE = 256;
/** Symlink targets shorter than this live in the inode itself ("fast" symlinks). */
const FAST_SYMLINK_MAX = 59;
/** ext4 dirent: 8 bytes of header plus the name, padded to 4. */
const direntBytes = (name: string) => 8 + ((Buffer.byteLength(name) + 3) & ~3);

export interface StagedEntry {
  /** Relative to the root, "" for the root itself. */
  rel: string;
  st: Stats;
}

export interface TreeMeasure {
  entries: StagedEntry[];
  inodes: number;
  /** Data and directory blocks plus inode table space, in bytes. */
  bytes: number;
}

const blocks = (bytes: number) => Math.ceil(bytes / BLOCK_SIZE) * BLOCK_SIZE;

export async function measureTree(root: string): Promise<TreeMeasure> {
  const entries: StagedEntry[] = [{ rel: "", st: await lstat(root) }];
  const seen = new Set<number>();
  let inodes = 0;
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    const { st } = entry;
    if (st.nlink > 1 && !st.isDirectory()) {
      if (seen.has(st.ino)) continue;
      seen.add(st.ino);
    }
    inodes++;
    if (st.isFile()) bytes += blocks(st.size);
    else if (st.isSymbolicLink() && st.size > FAST_SYMLINK_MAX) bytes += BLOCK_SIZE;
    else if (st.isDirectory()) {
      const dir = join(root, entry.rel);
      const names = await readdir(dir);
      bytes += Math.max(BLOCK_SIZE, blocks(names.reduce((n, name) => n + direntBytes(name), 24)));
      for (const name of names) {
        const rel = entry.rel === "" ? name : `${entry.rel}/${name}`;
        entries.push({ rel, st: await lstat(join(dir, name)) });
      }
    }
  }
  return { entries, inodes, bytes: bytes + inodes * INODE_SIZE };
}
