/**
 * A small writer for the cpio "newc" format, the one the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Output is deterministic:
 * entries sorted, owner root, one fixed mtime, inode numbers assigned in order.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { CorralError } from "../../errors.js";

export type CpioEntry =
  | { path: string; type: "directory"; mode?: number }
  | { path: string; type: "file"; mode: number; data: Uint8Array }
  | { path: string; type: "file"; mode: number; source: string }
  | { path: string; type: "symlink"; target: string }
  | { path: string; type: "char"; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** 2023-01-01T00:00:00Z: any fixed value keeps the archive byte-for-byte reproducible. */
export const FIXED_MTIME = 1672531200;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new CorralError("IMAGE_BUILD", `cpio field out of range: ${n}`);
  }
  return n.toString(16).padStart(8, "0");
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

interface HeaderFields {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  size: number;
  rdevMajor?: number;
  rdevMinor?: number;
  name: string;
}

function header(f: HeaderFields): Buffer {
  const name = Buffer.from(`${f.name}\0`);
  const fields = [
    f.ino,
    f.mode,
    0, // uid
    0, // gid
    f.nlink,
    f.mtime,
    f.size,
    0, // devmajor
    0, // devminor
    f.rdevMajor ?? 0,
    f.rdevMinor ?? 0,
    name.length,
    0, // check
  ];
  const head = Buffer.from(`070701${fields.map(hex8).join("")}`, "latin1");
  return Buffer.concat([head, name, pad4(head.length + name.length)]);
}

function normalize(path: string): string {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.includes("..")) {
    throw new CorralError("IMAGE_BUILD", `bad initramfs path: ${JSON.stringify(path)}`);
  }
  return parts.join("/");
}

function compareComponents(a: string, b: string): number {
  const pa = a.split("/");
  const pb = b.split("/");
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    if (x !== y) return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * Normalizes paths, adds missing parent directories (0755) and sorts so that every parent
 * precedes its children, which the kernel's unpacker needs.
 */
export function prepareEntries(entries: readonly CpioEntry[]): CpioEntry[] {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const path = normalize(e.path);
    if (byPath.has(path)) throw new CorralError("IMAGE_BUILD", `duplicate initramfs path: ${path}`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const existing = byPath.get(parent);
      if (existing === undefined) byPath.set(parent, { path: parent, type: "directory" });
      else if (existing.type !== "directory") {
        throw new CorralError("IMAGE_BUILD", `initramfs path ${parent} is not a directory`);
      }
    }
  }
  return [...byPath.values()].sort((a, b) => compareComponents(a.path, b.path));
}

/** The archive as a stream of chunks; file contents are streamed from disk, not buffered. */
export async function* cpioChunks(
  entries: readonly CpioEntry[],
  mtime = FIXED_MTIME,
): AsyncGenerator<Buffer> {
  let ino = 1;
  for (const e of prepareEntries(entries)) {
    const base = { ino: ino++, mtime, name: e.path };
    switch (e.type) {
      case "directory":
        yield header({ ...base, mode: S_IFDIR | (e.mode ?? 0o755), nlink: 2, size: 0 });
        break;
      case "symlink": {
        const target = Buffer.from(e.target);
        yield header({ ...base, mode: S_IFLNK | 0o777, nlink: 1, size: target.length });
        yield Buffer.concat([target, pad4(target.length)]);
        break;
      }
      case "char":
        yield header({
          ...base,
          mode: S_IFCHR | e.mode,
          nlink: 1,
          size: 0,
          rdevMajor: e.major,
          rdevMinor: e.minor,
        });
        break;
      case "file": {
        if ("data" in e) {
          yield header({ ...base, mode: S_IFREG | e.mode, nlink: 1, size: e.data.length });
          yield Buffer.from(e.data);
          yield pad4(e.data.length);
          break;
        }
        const { size } = await stat(e.source);
        yield header({ ...base, mode: S_IFREG | e.mode, nlink: 1, size });
        let read = 0;
        for await (const chunk of createReadStream(e.source)) {
          read += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (read !== size) {
          throw new CorralError("IMAGE_BUILD", `${e.source} changed while archiving it`);
        }
        yield pad4(size);
        break;
      }
    }
  }
  yield header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, name: "TRAILER!!!" });
}

export interface WrittenArchive {
  /** Compressed size on disk. */
  size: number;
  uncompressedSize: number;
}

/** Writes a gzip-compressed newc archive (the kernel decompresses gzip initramfs natively). */
export async function writeGzipCpio(
  entries: readonly CpioEntry[],
  outPath: string,
): Promise<WrittenArchive> {
  let uncompressedSize = 0;
  const counted = async function* () {
    for await (const chunk of cpioChunks(entries)) {
      uncompressedSize += chunk.length;
      yield chunk;
    }
  };
  await pipeline(
    Readable.from(counted()),
    createGzip({ level: 9 }),
    createWriteStream(outPath, { mode: 0o644 }),
  );
  return { size: (await stat(outPath)).size, uncompressedSize };
}
