/** SHA-256 of files, read without disturbing anyone else's use of the same descriptor. */
import { createHash } from "node:crypto";
import { createReadStream, openSync } from "node:fs";

export interface StreamDigest {
  sha256: string;
  size: number;
}

/**
 * Hashes a file from an open descriptor with positional reads (the descriptor's offset, which
 * a VMM reading the same open file uses, is left alone), then closes it.
 */
export async function hashDescriptor(fd: number, signal?: AbortSignal): Promise<StreamDigest> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream("", {
    fd,
    start: 0,
    autoClose: true,
    highWaterMark: 1024 * 1024,
    signal,
  })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

export async function sha256File(path: string): Promise<string> {
  return (await hashDescriptor(openSync(path, "r"))).sha256;
}
