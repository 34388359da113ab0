/**
 * Field encoders of ECMA-119 (ISO 9660): both-byte-order integers (7.2.3, 7.3.3), the two
 * date formats (8.4.26.1 in volume descriptors, 9.1.5 in directory records), padded
 * identifier strings, Joliet's UCS-2 big-endian strings and directory records (9.1).
 */
import { CorralError } from "../../errors.js";

export const SECTOR = 2048;

/** 16-bit integer in both byte orders (7.2.3), 4 bytes. */
export function both16(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(n, 0);
  b.writeUInt16BE(n, 2);
  return b;
}

/** 32-bit integer in both byte orders (7.3.3), 8 bytes. */
export function both32(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(n, 0);
  b.writeUInt32BE(n, 4);
  return b;
}

/** An a/d-character field: the ASCII text, padded with spaces to `length`. */
export function padAscii(text: string, length: number): Buffer {
  const b = Buffer.alloc(length, 0x20);
  b.write(text.slice(0, length), 0, "latin1");
  return b;
}

/** UCS-2 big-endian, as Joliet records every identifier. */
export function ucs2(text: string): Buffer {
  const b = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
}

/** A Joliet descriptor field: UCS-2 text padded with UCS-2 spaces (an odd last byte is 0). */
export function padUcs2(text: string, length: number): Buffer {
  const b = Buffer.alloc(length, 0);
  for (let i = 0; i + 1 < length; i += 2) b.writeUInt16BE(0x0020, i);
  ucs2(text.slice(0, Math.floor(length / 2))).copy(b, 0);
  return b;
}

/** The 17-byte date of volume descriptors (8.4.26.1), in UTC. */
export function descriptorDate(date: Date): Buffer {
  const p = (n: number, w: number) => String(n).padStart(w, "0");
  const text =
    p(date.getUTCFullYear(), 4) +
    p(date.getUTCMonth() + 1, 2) +
    p(date.getUTCDate(), 2) +
    p(date.getUTCHours(), 2) +
    p(date.getUTCMinutes(), 2) +
    p(date.getUTCSeconds(), 2) +
    p(Math.floor(date.getUTCMilliseconds() / 10), 2);
  return Buffer.concat([Buffer.from(text, "latin1"), Buffer.of(0)]);
}

/** "Not specified" (8.4.26.1): sixteen '0' digits and a zero offset. */
export const UNSPECIFIED_DATE = Buffer.concat([
  Buffer.from("0".repeat(16), "latin1"),
  Buffer.of(0),
]);

/** The 7-byte date of directory records (9.1.5) and Rock Ridge TF entries, in UTC. */
export function recordDate(date: Date): Buffer {
  return Buffer.of(
    date.getUTCFullYear() - 1900,
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    0, // offset from GMT in 15 minute units
  );
}

export const FLAG_DIRECTORY = 0x02;

/** Bytes a directory record takes before its system use area (with the padding byte). */
export function recordBaseLength(identifierLength: number): number {
  return 33 + identifierLength + (identifierLength % 2 === 0 ? 1 : 0);
}

/** Total length of a record: base + system use, rounded up to an even number (9.1.13). */
export function recordLength(identifierLength: number, systemUseLength: number): number {
  const n = recordBaseLength(identifierLength) + systemUseLength;
  return n + (n % 2);
}

export interface DirectoryRecordFields {
  location: number;
  size: number;
  date: Buffer;
  flags: number;
  identifier: Buffer;
  systemUse?: Buffer;
}

/** One directory record (9.1). */
export function directoryRecord(f: DirectoryRecordFields): Buffer {
  const systemUse = f.systemUse ?? Buffer.alloc(0);
  const length = recordLength(f.identifier.length, systemUse.length);
  // Identifiers and inline system use are sized to fit (rock-ridge.ts splitSystemUse).
  if (length > 255) throw new CorralError("INTERNAL", `directory record of ${length} bytes`);
  const b = Buffer.alloc(length);
  b[0] = length;
  b[1] = 0; // extended attribute record length
  both32(f.location).copy(b, 2);
  both32(f.size).copy(b, 10);
  f.date.copy(b, 18);
  b[25] = f.flags;
  b[26] = 0; // file unit size
  b[27] = 0; // interleave gap
  both16(1).copy(b, 28); // volume sequence number
  b[32] = f.identifier.length;
  f.identifier.copy(b, 33);
  systemUse.copy(b, recordBaseLength(f.identifier.length));
  return b;
}

/** Packs records into sectors: a record never crosses a sector boundary (6.8.1.1). */
export function packRecords(records: readonly Buffer[]): Buffer {
  const chunks: Buffer[] = [];
  let used = 0;
  for (const r of records) {
    const inSector = used % SECTOR;
    if (inSector + r.length > SECTOR) {
      chunks.push(Buffer.alloc(SECTOR - inSector));
      used += SECTOR - inSector;
    }
    chunks.push(r);
    used += r.length;
  }
  const rest = (SECTOR - (used % SECTOR)) % SECTOR;
  if (rest > 0 || used === 0) chunks.push(Buffer.alloc(used === 0 ? SECTOR : rest));
  return Buffer.concat(chunks);
}

/** Sectors the packed records take, without building them. */
export function packedSectors(lengths: readonly number[]): number {
  let used = 0;
  for (const n of lengths) {
    const inSector = used % SECTOR;
    if (inSector + n > SECTOR) used += SECTOR - inSector;
    used += n;
  }
  return Math.max(1, Math.ceil(used / SECTOR));
}

export function sectorsFor(bytes: number): number {
  return Math.ceil(bytes / SECTOR);
}
