import { closeSync, fstatSync, openSync, readSync } from "node:fs";

/** The last `maxLines` lines of the serial log, for error messages. Bounded read. */
export function serialTail(path: string, maxLines = 15, maxBytes = 8192): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return "";
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    const lines = buf
      .toString("utf8")
      .replace(/\r/g, "")
      .split("\n")
      .map((line) => line.replace(/[^\x20-\x7e\t]/g, "?"));
    while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    return lines.slice(-maxLines).join("\n");
  } finally {
    closeSync(fd);
  }
}
