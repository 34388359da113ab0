/**
 * What the staging directory cannot hold and the ext4 step must apply with debugfs: device
 * nodes and fifos (Node has no mknod; they are staged as empty placeholder files), xattrs
 * (Node has no setxattr; debugfs also sets security.* without host privileges), and, when
 * not staging as root, ownership and modes the host would not let us keep.
 * Keyed by real path relative to the root ("" is the root).
 */
import { isAtOrBelow } from "./paths.js";

export type DeviceKind = "char" | "block" | "fifo";

export interface DeviceNode {
  kind: DeviceKind;
  major: number;
  minor: number;
}

export interface InodeFixup {
  uid?: number;
  gid?: number;
  /** Permission bits incl. setuid/setgid/sticky (no file type bits). */
  mode?: number;
  /** Seconds since the epoch; only used for device nodes (mke2fs copies the rest). */
  mtime?: number;
  device?: DeviceNode;
  xattrs?: Record<string, Buffer>;
}

export class Fixups {
  private readonly byPath = new Map<string, InodeFixup>();

  get(path: string): InodeFixup | undefined {
    return this.byPath.get(path);
  }

  /** Replaces what is known about `path`: a new entry at a path is a new inode. */
  set(path: string, fixup: InodeFixup): void {
    this.byPath.set(path, fixup);
  }

  delete(path: string): void {
    this.byPath.delete(path);
  }

  deleteTree(path: string): void {
    for (const key of this.byPath.keys()) {
      if (isAtOrBelow(key, path)) this.byPath.delete(key);
    }
  }

  get size(): number {
    return this.byPath.size;
  }

  entries(): IterableIterator<[string, InodeFixup]> {
    return this.byPath.entries();
  }
}
