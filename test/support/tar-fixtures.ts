/** OCI layer blobs built in memory with tar-stream, for the layer and ext4 tests. */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import type { LayerBlob } from "../../src/images/oci/layers.js";

export interface TarEntry {
  name: string;
  type?: tar.Header["type"];
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export const FIXTURE_MTIME = new Date("2024-01-02T03:04:05Z");

export async function tarBuffer(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on("data", (chunk: unknown) => {
      chunks.push(chunk as Buffer);
    });
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  for (const e of entries) {
    const type = e.type ?? "file";
    const data = e.data === undefined ? undefined : Buffer.from(e.data);
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === "directory" ? 0o755 : type === "symlink" ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? FIXTURE_MTIME,
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
      pax: e.pax,
      size: data?.length ?? 0,
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      pack.entry(header, data ?? Buffer.alloc(0), cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export type FixtureCompression = "none" | "gzip" | "zstd" | "docker";

const MEDIA_TYPES: Record<FixtureCompression, string> = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  docker: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

export function compress(data: Buffer, compression: FixtureCompression): Buffer {
  if (compression === "none") return data;
  if (compression === "zstd") {
    const result = spawnSync("zstd", ["-q", "-c", "-3"], { input: data, maxBuffer: 1 << 30 });
    if (result.status !== 0) throw new Error(`zstd failed: ${result.stderr}`);
    return result.stdout;
  }
  return gzipSync(data, { level: 1 });
}

export function sha256Digest(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Writes a layer blob named by its digest into `dir`. */
export async function writeLayer(
  dir: string,
  entries: readonly TarEntry[],
  compression: FixtureCompression = "gzip",
): Promise<LayerBlob> {
  return writeBlob(dir, compress(await tarBuffer(entries), compression), MEDIA_TYPES[compression]);
}

export function writeBlob(dir: string, blob: Buffer, mediaType: string): LayerBlob {
  const digest = sha256Digest(blob);
  const path = join(dir, digest.replace(":", "-"));
  writeFileSync(path, blob);
  return { path, mediaType, digest };
}

/** Bytes that are not valid UTF-8, as a real security.capability value is. */
export const CAPABILITY_XATTR = Buffer.from("0100000200200000000000000000000000000000", "hex");

/**
 * A four-layer image exercising what the OCI spec asks of an unpacker: whiteouts, an opaque
 * directory, same-layer whiteouts, hardlinks within and across layers, symlinks (dangling,
 * absolute, relative), setuid/setgid/sticky, owners, devices, fifos, xattrs, an empty layer,
 * and a directory and a file trading places. EXPECTED_TREE is the tree it must produce.
 */
export async function writeSampleImage(dir: string): Promise<LayerBlob[]> {
  const base = await writeLayer(
    dir,
    [
      { name: "./", type: "directory", mode: 0o755 },
      { name: "bin/", type: "directory" },
      { name: "bin/sh", data: "#!/bin/sh\n", mode: 0o755 },
      { name: "bin/su", data: "su", mode: 0o4755 },
      { name: "usr/bin/wall", data: "wall", mode: 0o2755, gid: 5 },
      { name: "bin/hard", type: "link", linkname: "bin/sh" },
      { name: "etc/", type: "directory" },
      { name: "etc/passwd", data: "root:x:0:0\n" },
      { name: "etc/shadow", data: "root:*:1::::::\n", mode: 0o640, gid: 42 },
      { name: "etc/old.conf", data: "old" },
      { name: "home/user/", type: "directory", mode: 0o750, uid: 1000, gid: 1000 },
      { name: "home/user/file", data: "mine", uid: 1000, gid: 1000, mode: 0o600 },
      { name: "opt/app/", type: "directory" },
      { name: "opt/app/lower1", data: "l1" },
      { name: "opt/app/sub/", type: "directory" },
      { name: "opt/app/sub/lower2", data: "l2" },
      { name: "var/cache/", type: "directory" },
      { name: "var/cache/x", data: "x" },
      { name: "tmp/", type: "directory", mode: 0o1777 },
      { name: "lib/thing/", type: "directory" },
      { name: "lib/thing/a", data: "a" },
      { name: "data", data: "a file first" },
      { name: "ro/", type: "directory", mode: 0o555 },
      { name: "ro/file", data: "in a read-only dir", mode: 0o444 },
      { name: "links/dangling", type: "symlink", linkname: "nowhere/at/all" },
      { name: "links/abs", type: "symlink", linkname: "/etc/passwd" },
      { name: "links/rel", type: "symlink", linkname: "../etc/passwd" },
      { name: "dev/null", type: "character-device", mode: 0o666, devmajor: 1, devminor: 3 },
      { name: "dev/sda", type: "block-device", mode: 0o660, gid: 6, devmajor: 8, devminor: 0 },
      { name: "run/fifo", type: "fifo", mode: 0o600 },
      {
        name: "xattr/file",
        data: "x",
        pax: {
          "SCHILY.xattr.user.comment": "hello",
          "LIBARCHIVE.xattr.security.capability": CAPABILITY_XATTR.toString("base64"),
        },
      },
    ],
    "gzip",
  );
  const upper = await writeLayer(
    dir,
    [
      { name: "etc/.wh.old.conf" },
      { name: "etc/new.conf", data: "new" },
      { name: "etc/same", data: "kept" },
      { name: "etc/.wh.same" },
      { name: "opt/app/", type: "directory" },
      { name: "opt/app/fresh", data: "fresh" },
      { name: "opt/app/.wh..wh..opq" },
      { name: "lib/thing", data: "now a file" },
      { name: "data/", type: "directory", mode: 0o700 },
      { name: "data/inside", data: "now a dir" },
      { name: "usr/bin/su2", type: "link", linkname: "bin/su" },
      { name: "var/.wh.cache" },
    ],
    "zstd",
  );
  const empty = await writeLayer(dir, [], "none");
  const top = await writeLayer(
    dir,
    [
      { name: "home/user/file", data: "mine v2", uid: 1000, gid: 1000, mode: 0o600 },
      { name: "etc/passwd", data: "root:x:0:0\nuser:x:1000:1000\n" },
    ],
    "docker",
  );
  return [base, upper, empty, top];
}

export type ExpectedType = "file" | "dir" | "symlink" | "char" | "block" | "fifo";

export interface ExpectedEntry {
  type: ExpectedType;
  mode: number;
  uid?: number;
  gid?: number;
  content?: string;
  target?: string;
  device?: [number, number];
  /** Created only as a parent of other entries: no header, so no mtime to expect. */
  implicit?: boolean;
}

export const EXPECTED_TREE: Record<string, ExpectedEntry> = {
  bin: { type: "dir", mode: 0o755 },
  "bin/sh": { type: "file", mode: 0o755, content: "#!/bin/sh\n" },
  "bin/hard": { type: "file", mode: 0o755, content: "#!/bin/sh\n" },
  "bin/su": { type: "file", mode: 0o4755, content: "su" },
  "usr/bin/su2": { type: "file", mode: 0o4755, content: "su" },
  "usr/bin/wall": { type: "file", mode: 0o2755, gid: 5, content: "wall" },
  "etc/passwd": { type: "file", mode: 0o644, content: "root:x:0:0\nuser:x:1000:1000\n" },
  "etc/shadow": { type: "file", mode: 0o640, gid: 42 },
  "etc/new.conf": { type: "file", mode: 0o644, content: "new" },
  "etc/same": { type: "file", mode: 0o644, content: "kept" },
  "home/user": { type: "dir", mode: 0o750, uid: 1000, gid: 1000 },
  "home/user/file": { type: "file", mode: 0o600, uid: 1000, gid: 1000, content: "mine v2" },
  "opt/app": { type: "dir", mode: 0o755 },
  "opt/app/fresh": { type: "file", mode: 0o644, content: "fresh" },
  tmp: { type: "dir", mode: 0o1777 },
  "lib/thing": { type: "file", mode: 0o644, content: "now a file" },
  data: { type: "dir", mode: 0o700 },
  "data/inside": { type: "file", mode: 0o644, content: "now a dir" },
  ro: { type: "dir", mode: 0o555 },
  "ro/file": { type: "file", mode: 0o444 },
  "links/dangling": { type: "symlink", mode: 0o777, target: "nowhere/at/all" },
  "links/abs": { type: "symlink", mode: 0o777, target: "/etc/passwd" },
  "links/rel": { type: "symlink", mode: 0o777, target: "../etc/passwd" },
  "dev/null": { type: "char", mode: 0o666, device: [1, 3] },
  "dev/sda": { type: "block", mode: 0o660, gid: 6, device: [8, 0] },
  "run/fifo": { type: "fifo", mode: 0o600 },
  "xattr/file": { type: "file", mode: 0o644, content: "x" },
  var: { type: "dir", mode: 0o755, implicit: true },
};

/** Paths the layers created and later whited out, or that an opaque directory hid. */
export const ABSENT_PATHS = [
  "etc/old.conf",
  "etc/.wh.old.conf",
  "etc/.wh.same",
  "opt/app/lower1",
  "opt/app/sub",
  "opt/app/.wh..wh..opq",
  "var/cache",
  "lib/thing/a",
];
