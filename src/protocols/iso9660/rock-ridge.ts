/**
 * Rock Ridge (RRIP 1.10, "RRIP_1991A") over SUSP 1.10: the system use entries that give each
 * record its real name (NM), POSIX mode and links (PX) and times (TF). The root's "." record
 * starts with SP and announces the extension with ER; Linux prefers Rock Ridge over Joliet
 * only when it sees that ER while reading the root (fs/isofs/rock.c). Entries that do not fit
 * in a record go to a continuation area (CE), which never crosses a sector boundary.
 */
import { CorralError } from "../../errors.js";
import { both32, recordBaseLength, SECTOR } from "./encode.js";

const ER_ID = "RRIP_1991A";
const ER_DESCRIPTOR =
  "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE =
  "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/** RR flags (RRIP 1.09 RR entry, still written by genisoimage; Linux reads it). */
const RR_PX = 0x01;
const RR_NM = 0x08;
const RR_TF = 0x80;
/** TF flags: modify, access, attributes-change times, 7-byte form. */
const TF_MODIFY_ACCESS_ATTRIBUTES = 0x0e;
const CE_LENGTH = 28;

function entry(signature: string, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.write(signature, 0, "latin1");
  head[2] = 4 + body.length;
  head[3] = 1; // version
  return Buffer.concat([head, body]);
}

export function spEntry(): Buffer {
  return entry("SP", Buffer.of(0xbe, 0xef, 0));
}

export function erEntry(): Buffer {
  const lengths = Buffer.of(ER_ID.length, ER_DESCRIPTOR.length, ER_SOURCE.length, 1);
  const text = Buffer.from(ER_ID + ER_DESCRIPTOR + ER_SOURCE, "latin1");
  return entry("ER", Buffer.concat([lengths, text]));
}

export function rrEntry(hasName: boolean): Buffer {
  return entry("RR", Buffer.of(RR_PX | RR_TF | (hasName ? RR_NM : 0)));
}

export function nmEntry(name: string): Buffer {
  return entry("NM", Buffer.concat([Buffer.of(0), Buffer.from(name, "utf8")]));
}

/** PX in its RRIP 1.10 form (36 bytes): mode, links, uid, gid. */
export function pxEntry(mode: number, links: number): Buffer {
  return entry("PX", Buffer.concat([both32(mode), both32(links), both32(0), both32(0)]));
}

export function tfEntry(date7: Buffer): Buffer {
  return entry("TF", Buffer.concat([Buffer.of(TF_MODIFY_ACCESS_ATTRIBUTES), date7, date7, date7]));
}

export function ceEntry(block: number, offset: number, length: number): Buffer {
  return entry("CE", Buffer.concat([both32(block), both32(offset), both32(length)]));
}

/** A record's system use split into what stays in the record and what goes to a CE area. */
export interface SystemUse {
  inline: Buffer;
  spill: Buffer | undefined;
  /** Set when the continuation areas are laid out. */
  spillBlock?: number;
  spillOffset?: number;
}

/** Keeps as many entries in the record as fit (255 bytes), the rest (in order) in a CE area. */
export function splitSystemUse(identifierLength: number, entries: readonly Buffer[]): SystemUse {
  const available = 254 - recordBaseLength(identifierLength);
  const total = entries.reduce((n, e) => n + e.length, 0);
  if (total <= available) return { inline: Buffer.concat(entries), spill: undefined };
  const inline: Buffer[] = [];
  let used = 0;
  let i = 0;
  for (; i < entries.length; i++) {
    const e = entries[i]!;
    if (used + e.length + CE_LENGTH > available) break;
    inline.push(e);
    used += e.length;
  }
  const spill = Buffer.concat(entries.slice(i));
  // Names are at most 64 characters (names.ts), so one sector always holds the rest.
  if (spill.length > SECTOR) {
    throw new CorralError("INTERNAL", `continuation area of ${spill.length} bytes`);
  }
  return { inline: Buffer.concat(inline), spill };
}

/** The bytes of the system use area once the continuation location is known. */
export function systemUseBytes(su: SystemUse): Buffer {
  if (su.spill === undefined) return su.inline;
  if (su.spillBlock === undefined || su.spillOffset === undefined) {
    throw new CorralError("INTERNAL", "continuation area not laid out");
  }
  return Buffer.concat([su.inline, ceEntry(su.spillBlock, su.spillOffset, su.spill.length)]);
}

/** Length the system use area will have in the record. */
export function systemUseLength(su: SystemUse): number {
  return su.inline.length + (su.spill === undefined ? 0 : CE_LENGTH);
}

/** Lays the continuation areas out from `firstBlock`; returns the sectors they fill. */
export function layoutContinuations(areas: readonly SystemUse[], firstBlock: number): Buffer {
  const chunks: Buffer[] = [];
  let used = 0;
  for (const su of areas) {
    if (su.spill === undefined) continue;
    const inSector = used % SECTOR;
    if (inSector + su.spill.length > SECTOR) {
      chunks.push(Buffer.alloc(SECTOR - inSector));
      used += SECTOR - inSector;
    }
    su.spillBlock = firstBlock + Math.floor(used / SECTOR);
    su.spillOffset = used % SECTOR;
    chunks.push(su.spill);
    used += su.spill.length;
  }
  const rest = (SECTOR - (used % SECTOR)) % SECTOR;
  if (rest > 0) chunks.push(Buffer.alloc(rest));
  return Buffer.concat(chunks);
}
