/**
 * The structures that point at the directories: the path tables (9.4) of each tree and the
 * volume descriptors (8.4; Joliet's supplementary one; the set terminator).
 */
import { both16, both32, descriptorDate, SECTOR, UNSPECIFIED_DATE } from "./encode.js";

const APPLICATION_ID = "CORRAL";

export function pathTableSize(ids: readonly Buffer[]): number {
  return ids.reduce((n, id) => n + 8 + id.length + (id.length % 2), 0);
}

/** A path table (9.4): every directory's extent and parent, in directory-number order. */
export function pathTable(
  ids: readonly Buffer[],
  locations: readonly number[],
  order: "LE" | "BE",
): Buffer {
  const parts: Buffer[] = [];
  ids.forEach((id, i) => {
    const b = Buffer.alloc(8 + id.length + (id.length % 2));
    b[0] = id.length;
    b[1] = 0;
    if (order === "LE") {
      b.writeUInt32LE(locations[i]!, 2);
      b.writeUInt16LE(1, 6); // every directory's parent is the root (number 1)
    } else {
      b.writeUInt32BE(locations[i]!, 2);
      b.writeUInt16BE(1, 6);
    }
    id.copy(b, 8);
    parts.push(b);
  });
  return Buffer.concat(parts);
}

export interface DescriptorFields {
  type: 1 | 2;
  text: (text: string, length: number) => Buffer;
  volumeId: string;
  escapes: Buffer;
  totalSectors: number;
  pathTableSize: number;
  lPathTable: number;
  mPathTable: number;
  rootRecord: Buffer;
  createdAt: Date;
}

/** The primary (8.4) or, with UCS-2 text and the Joliet escape, supplementary descriptor. */
export function volumeDescriptor(f: DescriptorFields): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = f.type;
  b.write("CD001", 1, "latin1");
  b[6] = 1;
  f.text("", 32).copy(b, 8); // system identifier
  f.text(f.volumeId, 32).copy(b, 40);
  both32(f.totalSectors).copy(b, 80);
  f.escapes.copy(b, 88);
  both16(1).copy(b, 120); // volume set size
  both16(1).copy(b, 124); // volume sequence number
  both16(SECTOR).copy(b, 128);
  both32(f.pathTableSize).copy(b, 132);
  b.writeUInt32LE(f.lPathTable, 140);
  b.writeUInt32BE(f.mPathTable, 148);
  f.rootRecord.copy(b, 156);
  f.text("", 128).copy(b, 190); // volume set
  f.text("", 128).copy(b, 318); // publisher
  f.text("", 128).copy(b, 446); // data preparer
  f.text(APPLICATION_ID, 128).copy(b, 574);
  f.text("", 37).copy(b, 702); // copyright file
  f.text("", 37).copy(b, 739); // abstract file
  f.text("", 37).copy(b, 776); // bibliographic file
  descriptorDate(f.createdAt).copy(b, 813); // creation
  descriptorDate(f.createdAt).copy(b, 830); // modification
  UNSPECIFIED_DATE.copy(b, 847); // expiration
  UNSPECIFIED_DATE.copy(b, 864); // effective
  b[881] = 1; // file structure version
  return b;
}

export function terminator(): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = 255;
  b.write("CD001", 1, "latin1");
  b[6] = 1;
  return b;
}
