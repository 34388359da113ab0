/**
 * A small ISO 9660 writer for cloud-init NoCloud seeds (docs/cloud-init.md): a handful of
 * small files, in the root or one directory level below it, with Rock Ridge (real names and
 * modes, what Linux mounts by default) and Joliet (UCS-2 names) on top of ISO 9660 level 1
 * identifiers. Output is byte-for-byte deterministic: one timestamp (`createdAt`), sorted
 * records, files laid out in path order, owner root.
 *
 * Layout (2048-byte sectors): 0-15 system area (zero), 16 primary volume descriptor, 17
 * Joliet supplementary descriptor, 18 terminator, then the L and M path tables of both
 * trees, the ISO directories, the Rock Ridge continuation areas, the Joliet directories and
 * the file data (shared by both trees).
 */
import { CorralError } from "../../errors.js";
import { pathTable, pathTableSize, terminator, volumeDescriptor } from "./descriptors.js";
import {
  directoryRecord,
  FLAG_DIRECTORY,
  packedSectors,
  packRecords,
  padAscii,
  padUcs2,
  recordDate,
  recordLength,
  SECTOR,
  sectorsFor,
} from "./encode.js";
import { compareIsoIdentifiers, compareStrings, validateVolumeId } from "./names.js";
import { isoRecordPlans, jolietRecordPlans, type RecordPlan, targetFields } from "./records.js";
import { layoutContinuations, systemUseBytes, systemUseLength } from "./rock-ridge.js";
import { allFiles, assignIdentifiers, buildTree, type DirNode, type IsoFile } from "./tree.js";

export type { IsoFile } from "./tree.js";

export interface IsoOptions {
  /** The volume label (blkid LABEL): 1 to 32 letters, digits or '_'. */
  volumeId: string;
  files: readonly IsoFile[];
  /** Every timestamp in the image; default DEFAULT_CREATED_AT, for reproducible output. */
  createdAt?: Date;
}

/** 2000-01-01T00:00:00Z. */
export const DEFAULT_CREATED_AT = new Date(Date.UTC(2000, 0, 1));
/** Seeds are kilobytes; the image is built in memory, so refuse anything silly. */
export const MAX_ISO_BYTES = 1024 * 1024 * 1024;

const FIRST_PATH_TABLE = 19;

export function buildIso(options: IsoOptions): Buffer {
  if (typeof options !== "object" || options === null) {
    throw new CorralError("ISO", "options: expected an object");
  }
  validateVolumeId(options.volumeId);
  const createdAt = checkDate(options.createdAt ?? DEFAULT_CREATED_AT);
  const root = buildTree(options.files);
  assignIdentifiers(root);

  const date7 = recordDate(createdAt);
  const isoDirs = [root, ...[...root.dirs].sort((a, b) => compareIsoIdentifiers(a.isoId, b.isoId))];
  const jolietDirs = [root, ...[...root.dirs].sort((a, b) => a.jolietId.compare(b.jolietId))];
  isoDirs.forEach((d, i) => {
    d.iso.number = i + 1;
  });
  jolietDirs.forEach((d, i) => {
    d.joliet.number = i + 1;
  });

  // Path tables.
  const isoPathIds = isoDirs.map((d) =>
    d === root ? Buffer.of(0) : Buffer.from(d.isoId, "latin1"),
  );
  const jolietPathIds = jolietDirs.map((d) => (d === root ? Buffer.of(0) : d.jolietId));
  const isoPathSize = pathTableSize(isoPathIds);
  const jolietPathSize = pathTableSize(jolietPathIds);
  let next = FIRST_PATH_TABLE;
  const isoL = next;
  next += sectorsFor(isoPathSize);
  const isoM = next;
  next += sectorsFor(isoPathSize);
  const jolietL = next;
  next += sectorsFor(jolietPathSize);
  const jolietM = next;
  next += sectorsFor(jolietPathSize);

  // ISO directories (with Rock Ridge), their continuation areas, Joliet directories.
  const isoPlans = new Map<DirNode, RecordPlan[]>();
  for (const d of isoDirs) {
    const plans = isoRecordPlans(d, root, date7);
    isoPlans.set(d, plans);
    d.iso.sectors = packedSectors(
      plans.map((p) => recordLength(p.identifier.length, systemUseLength(p.su!))),
    );
    d.iso.location = next;
    next += d.iso.sectors;
  }
  const continuations = layoutContinuations(
    isoDirs.flatMap((d) => isoPlans.get(d)!.map((p) => p.su!)),
    next,
  );
  const continuationStart = next;
  next += continuations.length / SECTOR;
  const jolietPlans = new Map<DirNode, RecordPlan[]>();
  for (const d of jolietDirs) {
    const plans = jolietRecordPlans(d, root);
    jolietPlans.set(d, plans);
    d.joliet.sectors = packedSectors(plans.map((p) => recordLength(p.identifier.length, 0)));
    d.joliet.location = next;
    next += d.joliet.sectors;
  }

  // File data, in path order; an empty file points at the next free sector (as genisoimage).
  const files = allFiles(root).sort((a, b) => compareStrings(a.path, b.path));
  for (const f of files) {
    f.location = next;
    next += sectorsFor(f.data.length);
  }
  const totalSectors = next;
  if (totalSectors * SECTOR > MAX_ISO_BYTES) {
    throw new CorralError(
      "ISO",
      `files: the image would be ${totalSectors * SECTOR} bytes, more than the ${MAX_ISO_BYTES} byte limit`,
      { hint: "a seed holds small configuration files; pass large data as a disk instead" },
    );
  }

  const image = Buffer.alloc(totalSectors * SECTOR);
  const at = (sector: number) => sector * SECTOR;
  const rootRecord = (tree: "iso" | "joliet") =>
    directoryRecord({
      location: root[tree].location,
      size: root[tree].sectors * SECTOR,
      date: date7,
      flags: FLAG_DIRECTORY,
      identifier: Buffer.of(0),
    });
  volumeDescriptor({
    type: 1,
    text: padAscii,
    volumeId: options.volumeId,
    escapes: Buffer.alloc(32),
    totalSectors,
    pathTableSize: isoPathSize,
    lPathTable: isoL,
    mPathTable: isoM,
    rootRecord: rootRecord("iso"),
    createdAt,
  }).copy(image, at(16));
  volumeDescriptor({
    type: 2,
    text: padUcs2,
    volumeId: options.volumeId,
    // "%/E": UCS-2 level 3 (Joliet).
    escapes: Buffer.concat([Buffer.from("%/E", "latin1"), Buffer.alloc(29)]),
    totalSectors,
    pathTableSize: jolietPathSize,
    lPathTable: jolietL,
    mPathTable: jolietM,
    rootRecord: rootRecord("joliet"),
    createdAt,
  }).copy(image, at(17));
  terminator().copy(image, at(18));

  const isoLocations = isoDirs.map((d) => d.iso.location);
  const jolietLocations = jolietDirs.map((d) => d.joliet.location);
  pathTable(isoPathIds, isoLocations, "LE").copy(image, at(isoL));
  pathTable(isoPathIds, isoLocations, "BE").copy(image, at(isoM));
  pathTable(jolietPathIds, jolietLocations, "LE").copy(image, at(jolietL));
  pathTable(jolietPathIds, jolietLocations, "BE").copy(image, at(jolietM));

  for (const d of isoDirs) {
    const records = isoPlans.get(d)!.map((p) =>
      directoryRecord({
        ...targetFields(p.target, "iso", date7),
        identifier: p.identifier,
        systemUse: systemUseBytes(p.su!),
      }),
    );
    packRecords(records).copy(image, at(d.iso.location));
  }
  continuations.copy(image, at(continuationStart));
  for (const d of jolietDirs) {
    const records = jolietPlans
      .get(d)!
      .map((p) =>
        directoryRecord({ ...targetFields(p.target, "joliet", date7), identifier: p.identifier }),
      );
    packRecords(records).copy(image, at(d.joliet.location));
  }
  for (const f of files) image.set(f.data, at(f.location));
  return image;
}

function checkDate(date: Date): Date {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new CorralError("ISO", "createdAt: not a valid Date");
  }
  const year = date.getUTCFullYear();
  if (year < 1900 || year > 2155) {
    throw new CorralError("ISO", `createdAt: year ${year} is outside 1900..2155 (ISO 9660 dates)`);
  }
  return date;
}
