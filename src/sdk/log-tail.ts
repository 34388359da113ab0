/**
 * Bounded reads of a VM's log files (serial console, egress decisions): the last bytes only,
 * so a guest that floods its console cannot make a caller read gigabytes. The files
 * themselves stay internal (their paths are not API).
 */
import { open } from "node:fs/promises";

/** The last `maxBytes` bytes of `path`; empty when it does not exist (yet). */
export async function readTail(path: string, maxBytes: number): Promise<Buffer> {
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return Buffer.alloc(0);
    throw err;
  }
  try {
    const size = (await file.stat()).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, size - length);
    return buf.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

/**
 * JSON lines from the end of a log: a line cut by the bound (the first) and lines that are
 * not JSON objects are skipped.
 */
export function jsonLines(tail: Buffer, cut: boolean): Record<string, unknown>[] {
  const lines = tail.toString("utf8").split("\n");
  if (cut) lines.shift();
  const out: Record<string, unknown>[] = [];
  for (const line of lines) {
    if (line.trim() === "") continue;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        out.push(value as Record<string, unknown>);
      }
    } catch {
      // a line being written, or not ours
    }
  }
  return out;
}
