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
import {
  both16,
  both32,
  type DirectoryRecordFields,
  descriptorDate,
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
  UNSPECIFIED_DATE,
  ucs2,
} from "./encode.js";
import {
  compareIsoIdentifiers,
  compareStrings,
  isoIdentifiers,
  splitPath,
  validateVolumeId,
} from "./names.js";
import {
  erEntry,
  layoutContinuations,
  nmEntry,
  pxEntry,
  rrEntry,
  type SystemUse,
  spEntry,
  splitSystemUse,
  systemUseBytes,
  systemUseLength,
  tfEntry,
} from "./rock-ridge.js";

export interface IsoFile {
  /** "name" or "dir/name" (one directory level). */
  name: string;
  data: Uint8Array;
  /** Permission bits (default 0o644); the file type is always a regular file. */
  mode?: number;
}

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

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const DIR_MODE = S_IFDIR | 0o755;
const APPLICATION_ID = "CORRAL";
const FIRST_PATH_TABLE = 19;

interface FileNode {
  name: string;
  path: string;
  data: Uint8Array;
  mode: number;
  isoId: string;
  jolietId: Buffer;
  location: number;
}

interface DirNode {
  name: string;
  parent: DirNode | undefined;
  files: FileNode[];
  dirs: DirNode[];
  isoId: string;
  jolietId: Buffer;
  iso: TreePlacement;
  joliet: TreePlacement;
}

interface TreePlacement {
  location: number;
  sectors: number;
  /** 1-based directory number in this tree's path table. */
  number: number;
}

type Child = { kind: "file"; node: FileNode } | { kind: "dir"; node: DirNode };

interface RecordPlan {
  identifier: Buffer;
  /** Where the record points. */
  target: Child;
  su?: SystemUse;
}

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

function emptyPlacement(): TreePlacement {
  return { location: 0, sectors: 0, number: 0 };
}

function newDir(name: string, parent: DirNode | undefined): DirNode {
  return {
    name,
    parent,
    files: [],
    dirs: [],
    isoId: "",
    jolietId: ucs2(name),
    iso: emptyPlacement(),
    joliet: emptyPlacement(),
  };
}

function buildTree(files: readonly IsoFile[]): DirNode {
  if (!Array.isArray(files)) throw new CorralError("ISO", "files: expected an array");
  const root = newDir("", undefined);
  const seen = new Map<string, "file" | "dir">();
  files.forEach((file, i) => {
    const field = `files[${i}].name`;
    const { dir, base } = splitPath(file?.name, field);
    if (!(file.data instanceof Uint8Array)) {
      throw new CorralError("ISO", `files[${i}].data: expected a Buffer`);
    }
    const mode = file.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw new CorralError(
        "ISO",
        `files[${i}].mode: ${mode} is not a permission mode (0 to 0o7777)`,
        {
          hint: "pass permission bits only, e.g. 0o644 or 0o755",
        },
      );
    }
    let parent = root;
    if (dir !== undefined) {
      if (seen.get(dir) === "file") {
        throw new CorralError("ISO", `${field}: "${dir}" is already a file`);
      }
      let d = root.dirs.find((x) => x.name === dir);
      if (d === undefined) {
        d = newDir(dir, root);
        root.dirs.push(d);
        seen.set(dir, "dir");
      }
      parent = d;
    }
    const path = dir === undefined ? base : `${dir}/${base}`;
    if (seen.has(path)) {
      const what = seen.get(path) === "dir" ? "a directory" : "given twice";
      throw new CorralError("ISO", `${field}: "${path}" is ${what}`);
    }
    seen.set(path, "file");
    parent.files.push({
      name: base,
      path,
      data: file.data,
      mode: S_IFREG | mode,
      isoId: "",
      jolietId: ucs2(base),
      location: 0,
    });
  });
  return root;
}

function assignIdentifiers(dir: DirNode): void {
  const entries = [
    ...dir.dirs.map((d) => ({ name: d.name, dir: true })),
    ...dir.files.map((f) => ({ name: f.name, dir: false })),
  ];
  const ids = isoIdentifiers(entries);
  dir.dirs.forEach((d, i) => {
    d.isoId = ids[i]!;
  });
  dir.files.forEach((f, i) => {
    f.isoId = ids[dir.dirs.length + i]!;
  });
  for (const d of dir.dirs) assignIdentifiers(d);
}

function allFiles(dir: DirNode): FileNode[] {
  return [...dir.files, ...dir.dirs.flatMap(allFiles)];
}

function children(dir: DirNode): Child[] {
  return [
    ...dir.dirs.map((node): Child => ({ kind: "dir", node })),
    ...dir.files.map((node): Child => ({ kind: "file", node })),
  ];
}

function links(dir: DirNode): number {
  return 2 + dir.dirs.length;
}

function isoRecordPlans(dir: DirNode, root: DirNode, date7: Buffer): RecordPlan[] {
  const parent = dir.parent ?? dir;
  const tf = tfEntry(date7);
  const self: Buffer[] = [rrEntry(false), pxEntry(DIR_MODE, links(dir)), tf];
  const plans: RecordPlan[] = [
    {
      identifier: Buffer.of(0),
      target: { kind: "dir", node: dir },
      su: splitSystemUse(1, dir === root ? [spEntry(), ...self, erEntry()] : self),
    },
    {
      identifier: Buffer.of(1),
      target: { kind: "dir", node: parent },
      su: splitSystemUse(1, [rrEntry(false), pxEntry(DIR_MODE, links(parent)), tf]),
    },
  ];
  const sorted = children(dir).sort((a, b) => compareIsoIdentifiers(a.node.isoId, b.node.isoId));
  for (const c of sorted) {
    const identifier = Buffer.from(c.node.isoId, "latin1");
    const px = c.kind === "dir" ? pxEntry(DIR_MODE, links(c.node)) : pxEntry(c.node.mode, 1);
    plans.push({
      identifier,
      target: c,
      su: splitSystemUse(identifier.length, [rrEntry(true), nmEntry(c.node.name), px, tf]),
    });
  }
  return plans;
}

function jolietRecordPlans(dir: DirNode, root: DirNode): RecordPlan[] {
  const parent = dir.parent ?? root;
  const sorted = children(dir).sort((a, b) => a.node.jolietId.compare(b.node.jolietId));
  return [
    { identifier: Buffer.of(0), target: { kind: "dir", node: dir } },
    { identifier: Buffer.of(1), target: { kind: "dir", node: parent } },
    ...sorted.map((c) => ({ identifier: c.node.jolietId, target: c })),
  ];
}

function targetFields(
  target: Child,
  tree: "iso" | "joliet",
  date7: Buffer,
): Omit<DirectoryRecordFields, "identifier"> {
  if (target.kind === "dir") {
    const p = target.node[tree];
    return { location: p.location, size: p.sectors * SECTOR, date: date7, flags: FLAG_DIRECTORY };
  }
  return { location: target.node.location, size: target.node.data.length, date: date7, flags: 0 };
}

function pathTableSize(ids: readonly Buffer[]): number {
  return ids.reduce((n, id) => n + 8 + id.length + (id.length % 2), 0);
}

/** A path table (9.4): every directory's extent and parent, in directory-number order. */
function pathTable(
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

interface DescriptorFields {
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
function volumeDescriptor(f: DescriptorFields): Buffer {
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

function terminator(): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = 255;
  b.write("CD001", 1, "latin1");
  b[6] = 1;
  return b;
}
