import { createReadStream, createWriteStream } from "node:fs";
import { chmod, link, mkdir, realpath, rm, stat, symlink } from "node:fs/promises";
import { join, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { CorralError } from "../../errors.js";
import { listArMembers } from "./ar.js";
import { compressionOf, decompress } from "./decompress.js";

export type EntryType = "file" | "directory" | "symlink" | "hardlink";

export interface ExtractedEntry {
  /** Path relative to the target directory, without "./". */
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  /** Symlink target as stored, or the archive path a hardlink points at. */
  linkname?: string;
}

/**
 * An archive path made relative and checked: absolute paths and ".." segments would let a
 * package write outside the target directory, so they are refused outright.
 */
export function safeEntryPath(name: string): string {
  if (name.startsWith("/")) {
    throw new CorralError("ARCHIVE", `refusing absolute path in archive: ${JSON.stringify(name)}`);
  }
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) {
    throw new CorralError("ARCHIVE", `refusing path escaping the target: ${JSON.stringify(name)}`);
  }
  return parts.join("/");
}

async function assertInside(root: string, dir: string, entry: string): Promise<void> {
  // A symlink extracted earlier could redirect a later entry outside the root.
  const real = await realpath(dir);
  if (real !== root && !real.startsWith(root + sep)) {
    throw new CorralError(
      "ARCHIVE",
      `refusing ${entry}: its directory resolves outside the target`,
    );
  }
}

function typeOf(header: tar.Header): EntryType | undefined {
  switch (header.type) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "directory";
    case "symlink":
      return "symlink";
    case "link":
      return "hardlink";
    default:
      return undefined;
  }
}

/** Streams a .deb's data.tar.* member (decompressed) without unpacking it to disk. */
export async function openDebData(debPath: string) {
  const members = await listArMembers(debPath);
  const data = members.find((m) => m.name.startsWith("data.tar"));
  if (data === undefined) throw new CorralError("ARCHIVE", `${debPath} has no data.tar member`);
  const kind = compressionOf(data.name);
  if (kind === undefined) {
    throw new CorralError("ARCHIVE", `${debPath}: unsupported member ${data.name}`);
  }
  if (data.size === 0) throw new CorralError("ARCHIVE", `${debPath}: empty ${data.name}`);
  const raw = createReadStream(debPath, { start: data.offset, end: data.offset + data.size - 1 });
  return decompress(kind, raw);
}

/**
 * Extracts the entries of a .deb's data archive that `select` accepts (called with the
 * normalized relative path) into `dest`, keeping modes, symlinks and hardlinks.
 */
export async function extractDeb(
  debPath: string,
  dest: string,
  select: (path: string, type: EntryType) => boolean,
): Promise<ExtractedEntry[]> {
  await mkdir(dest, { recursive: true });
  const root = await realpath(dest);
  const stream = await openDebData(debPath);
  const extract = tar.extract();
  const done: ExtractedEntry[] = [];
  const consume = (async () => {
    for await (const entry of extract) {
      const header = entry.header;
      const path = safeEntryPath(header.name);
      const type = typeOf(header);
      if (path === "" || type === undefined || !select(path, type)) {
        entry.resume();
        continue;
      }
      const target = join(root, path);
      const mode = (header.mode ?? (type === "directory" ? 0o755 : 0o644)) & 0o7777;
      const parent = join(target, "..");
      await mkdir(parent, { recursive: true });
      await assertInside(root, parent, path);
      const record: ExtractedEntry = { path, type, mode, size: header.size ?? 0 };
      if (type === "directory") {
        entry.resume();
        await mkdir(target, { recursive: true });
        await chmod(target, mode | 0o700);
      } else if (type === "symlink") {
        entry.resume();
        await rm(target, { force: true });
        await symlink(header.linkname ?? "", target);
        record.linkname = header.linkname ?? "";
      } else if (type === "hardlink") {
        entry.resume();
        const from = safeEntryPath(header.linkname ?? "");
        const source = join(root, from);
        if (!(await stat(source).catch(() => undefined))) {
          throw new CorralError(
            "ARCHIVE",
            `${path} is a hardlink to ${from}, which was not extracted: select it too`,
          );
        }
        await rm(target, { force: true });
        await link(source, target);
        record.linkname = from;
      } else {
        // Replace, never write through: an existing symlink at the path must not be followed.
        await rm(target, { force: true });
        await pipeline(entry, createWriteStream(target, { mode, flags: "wx" }));
        await chmod(target, mode);
      }
      done.push(record);
    }
  })().catch((err: unknown) => {
    // Stop the decoder too: nobody reads the rest of the stream any more.
    extract.destroy();
    stream.destroy();
    throw err;
  });
  await Promise.all([pipeline(stream, extract), consume]);
  return done;
}

/**
 * Calls `onFile` with the full contents of every regular file `select` accepts, without
 * writing anything to disk (for reading metadata such as kernel modules' .modinfo).
 */
export async function readDebFiles(
  debPath: string,
  select: (path: string) => boolean,
  onFile: (path: string, data: Buffer) => void | Promise<void>,
): Promise<void> {
  const stream = await openDebData(debPath);
  const extract = tar.extract();
  const consume = (async () => {
    for await (const entry of extract) {
      const path = safeEntryPath(entry.header.name);
      if (typeOf(entry.header) !== "file" || !select(path)) {
        entry.resume();
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      await onFile(path, Buffer.concat(chunks));
    }
  })().catch((err: unknown) => {
    extract.destroy();
    stream.destroy();
    throw err;
  });
  await Promise.all([pipeline(stream, extract), consume]);
}
