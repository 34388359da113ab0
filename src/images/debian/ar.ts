import { open } from "node:fs/promises";
import { CorralError } from "../../errors.js";

export interface ArMember {
  name: string;
  /** Byte offset of the member's data in the archive. */
  offset: number;
  size: number;
}

const MAGIC = "!<arch>\n";
const HEADER = 60;

/** Parses one 60-byte ar member header (common format, as dpkg-deb writes it). */
export function parseArHeader(header: Uint8Array, at: number): { name: string; size: number } {
  const text = Buffer.from(header).toString("latin1");
  if (text.slice(58, 60) !== "`\n") {
    throw new CorralError("ARCHIVE", `bad ar member header at offset ${at}`);
  }
  // GNU ar ends names with "/"; dpkg-deb pads with spaces.
  const name = text.slice(0, 16).trimEnd().replace(/\/$/, "");
  const sizeText = text.slice(48, 58).trim();
  const size = Number(sizeText);
  if (!/^\d+$/.test(sizeText) || !Number.isSafeInteger(size)) {
    throw new CorralError("ARCHIVE", `bad ar member size ${JSON.stringify(sizeText)} at ${at}`);
  }
  return { name, size };
}

/** Lists the members of an ar archive (a .deb) without reading their data. */
export async function listArMembers(path: string): Promise<ArMember[]> {
  const fh = await open(path, "r");
  try {
    const { size: total } = await fh.stat();
    const magic = Buffer.alloc(MAGIC.length);
    await fh.read(magic, 0, magic.length, 0);
    if (magic.toString("latin1") !== MAGIC) {
      throw new CorralError("ARCHIVE", `${path} is not an ar archive (.deb)`);
    }
    const members: ArMember[] = [];
    const header = Buffer.alloc(HEADER);
    let pos = MAGIC.length;
    while (pos + HEADER <= total) {
      const { bytesRead } = await fh.read(header, 0, HEADER, pos);
      if (bytesRead < HEADER) break;
      const { name, size } = parseArHeader(header, pos);
      const offset = pos + HEADER;
      if (offset + size > total) {
        throw new CorralError("ARCHIVE", `${path}: member ${name} is truncated`);
      }
      members.push({ name, offset, size });
      pos = offset + size + (size % 2);
    }
    return members;
  } finally {
    await fh.close();
  }
}
