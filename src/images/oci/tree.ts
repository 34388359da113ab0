/**
 * The staging tree shared by all layers: where it is, how ownership is kept (chown as root,
 * recorded otherwise), what debugfs must fix later, and directory metadata that can only be
 * applied once every layer is in (a read-only directory must stay writable while filled, and
 * each write into a directory bumps its mtime).
 */
import { chmodSync, rmSync, unlinkSync, utimesSync } from "node:fs";
import { Fixups } from "./fixups.js";
import { isAtOrBelow } from "./paths.js";
import { lstatOrUndefined, RootResolver } from "./resolve.js";

/**
 * "chown": the host owns staged files as the image says (needs root); mke2fs -d copies them.
 * "record": files stay owned by the current user; uid/gid/modes go to the ext4 step.
 */
export type OwnershipMode = "chown" | "record";

export function defaultOwnershipMode(): OwnershipMode {
  return process.getuid?.() === 0 ? "chown" : "record";
}

interface DirMeta {
  mode: number;
  mtime?: Date;
}

export class StagingTree {
  readonly resolver: RootResolver;
  readonly fixups = new Fixups();
  readonly warnings: string[] = [];
  private readonly dirs = new Map<string, DirMeta>();

  constructor(
    readonly root: string,
    readonly ownership: OwnershipMode,
  ) {
    this.resolver = new RootResolver(root);
  }

  abs(rel: string): string {
    return this.resolver.abs(rel);
  }

  setDirMeta(rel: string, meta: DirMeta): void {
    this.dirs.set(rel, meta);
  }

  removeTree(rel: string): void {
    rmSync(this.abs(rel), { recursive: true, force: true });
    this.fixups.deleteTree(rel);
    for (const key of this.dirs.keys()) {
      if (isAtOrBelow(key, rel)) this.dirs.delete(key);
    }
    this.resolver.forget();
  }

  removeNonDir(rel: string, wasSymlink: boolean): void {
    unlinkSync(this.abs(rel));
    this.fixups.delete(rel);
    if (wasSymlink) this.resolver.forget();
  }

  remove(rel: string): void {
    const st = lstatOrUndefined(this.abs(rel));
    if (st === undefined) return;
    if (st.isDirectory()) this.removeTree(rel);
    else this.removeNonDir(rel, st.isSymbolicLink());
  }

  /** Directory modes and mtimes, deepest first so a parent's mtime is not bumped afterwards. */
  finishDirectories(): void {
    const depth = (p: string) => (p === "" ? -1 : p.split("/").length);
    const ordered = [...this.dirs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, meta] of ordered) {
      const abs = this.abs(rel);
      const st = lstatOrUndefined(abs);
      if (st === undefined || !st.isDirectory()) continue;
      // Not root: the owner keeps rwx so mke2fs can read the tree and we can delete it later.
      chmodSync(abs, this.ownership === "chown" ? meta.mode : meta.mode | 0o700);
      if (meta.mtime !== undefined) utimesSync(abs, meta.mtime, meta.mtime);
    }
  }
}
