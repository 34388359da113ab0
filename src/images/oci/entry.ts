/**
 * Applies one layer's tar entries onto the staging tree. Never writes through an existing
 * path: whatever sits at an entry's name is removed first (a symlink there is unlinked, not
 * followed), files are created with O_EXCL|O_NOFOLLOW, and parents are resolved by
 * resolve.ts. Metadata calls are synchronous for speed (see resolve.ts); only file data is
 * awaited, chunk by chunk, as it streams out of the layer.
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import type * as tar from "tar-stream";
import type { DeviceKind, InodeFixup } from "./fixups.js";
import { entryParts, joinRel, UnsafePathError, whiteoutOf } from "./paths.js";
import { lstatOrUndefined } from "./resolve.js";
import type { StagingTree } from "./tree.js";

/** tar-stream does not export its entry stream type. */
type TarEntry = tar.Extract extends AsyncIterable<infer E> ? E : never;

const IMPLICIT_DIR_MODE = 0o755;
const CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const DEVICE_KINDS: Partial<Record<string, DeviceKind>> = {
  "character-device": "char",
  "block-device": "block",
  fifo: "fifo",
};

function parentOf(rel: string): string {
  const at = rel.lastIndexOf("/");
  return at < 0 ? "" : rel.slice(0, at);
}

/**
 * xattrs from PAX records. tar-stream decodes PAX values as UTF-8, so a binary value (e.g.
 * security.capability) written by GNU tar's SCHILY.xattr arrives lossy and is skipped with a
 * warning; libarchive's LIBARCHIVE.xattr form is base64 and survives intact.
 */
export function paxXattrs(
  header: tar.Header,
  warn: (message: string) => void,
): Record<string, Buffer> | undefined {
  const pax = (header as { pax?: Record<string, string> | null }).pax;
  if (pax === undefined || pax === null) return undefined;
  const out: Record<string, Buffer> = {};
  let found = false;
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith("SCHILY.xattr.")) {
      const name = key.slice("SCHILY.xattr.".length);
      if (value.includes("\uFFFD")) {
        warn(`${header.name}: xattr ${name} has a binary value tar-stream cannot decode; skipped`);
        continue;
      }
      out[name] = Buffer.from(value, "utf8");
      found = true;
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      out[decodeURIComponent(key.slice("LIBARCHIVE.xattr.".length))] = Buffer.from(value, "base64");
      found = true;
    }
  }
  return found ? out : undefined;
}

interface Target {
  rel: string;
  abs: string;
}

export class LayerApplier {
  /** Real paths this layer created or changed (and their ancestors): its own whiteouts spare them. */
  private readonly touched = new Set<string>();
  /** The entry being applied, for error messages. */
  current = "";

  constructor(private readonly tree: StagingTree) {}

  private readonly createDir = (rel: string): void => {
    mkdirSync(this.tree.abs(rel), { mode: 0o700 });
    this.touch(rel);
    this.tree.setDirMeta(rel, { mode: IMPLICIT_DIR_MODE });
    if (this.tree.ownership === "record") {
      this.tree.fixups.set(rel, { uid: 0, gid: 0, mode: IMPLICIT_DIR_MODE });
    }
  };

  private touch(rel: string): void {
    for (let p = rel; p !== "" && !this.touched.has(p); p = parentOf(p)) this.touched.add(p);
  }

  private resolveTarget(parts: readonly string[]): Target {
    const parent = this.tree.resolver.dir(parts.slice(0, -1), this.createDir);
    const rel = joinRel(parent ?? "", parts[parts.length - 1] ?? "");
    return { rel, abs: this.tree.abs(rel) };
  }

  /** Clears the way for a new entry; an existing directory stays when a directory comes. */
  private clear(target: Target, keepDir: boolean): boolean {
    const st = lstatOrUndefined(target.abs);
    if (st === undefined) return false;
    if (st.isDirectory()) {
      if (keepDir) return true;
      this.tree.removeTree(target.rel);
    } else {
      this.tree.removeNonDir(target.rel, st.isSymbolicLink());
    }
    return false;
  }

  async apply(entry: TarEntry): Promise<void> {
    const header = entry.header;
    this.current = header.name;
    // tar-stream leaves the type null for type flags it does not know.
    const type: string = header.type ?? "unknown";
    const parts = entryParts(header.name);
    const base = parts[parts.length - 1];
    const wh = base === undefined ? undefined : whiteoutOf(base);
    if (base === undefined || wh?.kind !== "none") {
      // Whiteouts and the root carry no data worth reading, even if a layer gave them some.
      entry.resume();
      if (base === undefined && type === "directory") this.applyRoot(header);
      if (wh?.kind === "opaque") this.opaque(parts.slice(0, -1));
      if (wh?.kind === "whiteout") this.whiteout(parts.slice(0, -1), wh.name);
      return;
    }
    if (type === "file" || type === "contiguous-file") return this.file(parts, entry);
    entry.resume();
    if (type === "directory") return this.directory(parts, header);
    if (type === "symlink") return this.symlink(parts, header);
    if (type === "link") return this.hardlink(parts, header);
    const kind = DEVICE_KINDS[type];
    if (kind !== undefined) return this.device(parts, header, kind);
    this.tree.warnings.push(`${header.name}: entry type ${type} skipped`);
  }

  private meta(header: tar.Header) {
    return {
      mode: (header.mode ?? 0o644) & 0o7777,
      uid: header.uid ?? 0,
      gid: header.gid ?? 0,
      mtime: header.mtime ?? new Date(0),
      xattrs: paxXattrs(header, (m) => this.tree.warnings.push(m)),
    };
  }

  /** What the ext4 step must know about an inode beyond what the staged file carries. */
  private record(rel: string, fixup: InodeFixup, xattrs: Record<string, Buffer> | undefined) {
    const full = xattrs === undefined ? fixup : { ...fixup, xattrs };
    if (this.tree.ownership === "record" || full.device !== undefined) {
      this.tree.fixups.set(rel, full);
    } else if (xattrs !== undefined) {
      this.tree.fixups.set(rel, { xattrs });
    } else {
      this.tree.fixups.delete(rel);
    }
  }

  private async file(parts: string[], entry: TarEntry): Promise<void> {
    const m = this.meta(entry.header);
    const target = this.resolveTarget(parts);
    this.clear(target, false);
    const fd = openSync(target.abs, CREATE_FLAGS, 0o600);
    try {
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; ) at += writeSync(fd, chunk, at);
      }
      const chown = this.tree.ownership === "chown";
      // chown clears setuid/setgid, so the mode comes after it.
      if (chown) fchownSync(fd, m.uid, m.gid);
      fchmodSync(fd, chown ? m.mode : m.mode | 0o400);
      futimesSync(fd, m.mtime, m.mtime);
    } finally {
      closeSync(fd);
    }
    this.record(target.rel, { uid: m.uid, gid: m.gid, mode: m.mode }, m.xattrs);
    this.touch(target.rel);
  }

  private directory(parts: string[], header: tar.Header): void {
    const m = this.meta(header);
    const target = this.resolveTarget(parts);
    const exists = this.clear(target, true);
    if (!exists) mkdirSync(target.abs, { mode: 0o700 });
    if (this.tree.ownership === "chown") lchownSync(target.abs, m.uid, m.gid);
    this.tree.setDirMeta(target.rel, { mode: m.mode, mtime: m.mtime });
    this.record(target.rel, { uid: m.uid, gid: m.gid, mode: m.mode }, m.xattrs);
    this.touch(target.rel);
  }

  private applyRoot(header: tar.Header): void {
    const m = this.meta(header);
    this.tree.setDirMeta("", { mode: m.mode, mtime: m.mtime });
    // mke2fs -d does not take the root's owner or mode from the source directory.
    this.tree.fixups.set("", { uid: m.uid, gid: m.gid, mode: m.mode });
  }

  private symlink(parts: string[], header: tar.Header): void {
    const m = this.meta(header);
    const target = this.resolveTarget(parts);
    this.clear(target, false);
    // Stored as-is (absolute or dangling alike) and never followed by anything here.
    symlinkSync(header.linkname ?? "", target.abs);
    if (this.tree.ownership === "chown") lchownSync(target.abs, m.uid, m.gid);
    lutimesSync(target.abs, m.mtime, m.mtime);
    this.record(target.rel, { uid: m.uid, gid: m.gid }, m.xattrs);
    this.touch(target.rel);
  }

  private hardlink(parts: string[], header: tar.Header): void {
    const linkParts = entryParts(header.linkname ?? "");
    const linkBase = linkParts[linkParts.length - 1];
    if (linkBase === undefined) throw new UnsafePathError("hardlink to the root directory");
    const linkParent = this.tree.resolver.dir(linkParts.slice(0, -1));
    const sourceRel = joinRel(linkParent ?? "", linkBase);
    const source =
      linkParent === undefined ? undefined : lstatOrUndefined(this.tree.abs(sourceRel));
    if (source === undefined) {
      throw new UnsafePathError(`hardlink target "${header.linkname}" does not exist`);
    }
    if (source.isDirectory()) {
      throw new UnsafePathError(`hardlink target "${header.linkname}" is a directory`);
    }
    const target = this.resolveTarget(parts);
    if (target.rel === sourceRel) return;
    this.clear(target, false);
    // link(2) does not follow a symlink source: the link shares the symlink's own inode.
    linkSync(this.tree.abs(sourceRel), target.abs);
    const shared = this.tree.fixups.get(sourceRel);
    if (shared === undefined) this.tree.fixups.delete(target.rel);
    else this.tree.fixups.set(target.rel, shared);
    this.touch(target.rel);
  }

  private device(parts: string[], header: tar.Header, kind: DeviceKind): void {
    const m = this.meta(header);
    const target = this.resolveTarget(parts);
    this.clear(target, false);
    // A placeholder keeps whiteouts and replacements working; debugfs swaps in the node.
    closeSync(openSync(target.abs, CREATE_FLAGS, 0o600));
    const device = { kind, major: header.devmajor ?? 0, minor: header.devminor ?? 0 };
    const mtime = Math.floor(m.mtime.getTime() / 1000);
    this.record(target.rel, { uid: m.uid, gid: m.gid, mode: m.mode, mtime, device }, m.xattrs);
    this.touch(target.rel);
  }

  private whiteout(parentParts: string[], name: string): void {
    const parent = this.tree.resolver.dir(parentParts);
    if (parent === undefined) return;
    const rel = joinRel(parent, name);
    // The spec: a whiteout hides lower layers only, never entries of its own layer.
    if (this.touched.has(rel)) return;
    this.tree.remove(rel);
  }

  private opaque(dirParts: string[]): void {
    const dir = this.tree.resolver.dir(dirParts);
    if (dir === undefined) return;
    this.touch(dir);
    this.clearLower(dir);
  }

  private clearLower(dir: string): void {
    for (const name of readdirSync(this.tree.abs(dir))) {
      const rel = joinRel(dir, name);
      if (!this.touched.has(rel)) {
        this.tree.remove(rel);
        continue;
      }
      const st = lstatOrUndefined(this.tree.abs(rel));
      if (st?.isDirectory()) this.clearLower(rel);
    }
  }
}
