/**
 * The directory records of both trees, planned before they are placed: `.`, `..` and the
 * children in each tree's sort order; ISO records carry Rock Ridge entries (real names, modes,
 * timestamps) in their system use area, Joliet records only UCS-2 names.
 */
import { type DirectoryRecordFields, FLAG_DIRECTORY, SECTOR } from "./encode.js";
import { compareIsoIdentifiers } from "./names.js";
import {
  erEntry,
  nmEntry,
  pxEntry,
  rrEntry,
  type SystemUse,
  spEntry,
  splitSystemUse,
  tfEntry,
} from "./rock-ridge.js";
import { type Child, children, type DirNode, links } from "./tree.js";

const S_IFDIR = 0o040000;
const DIR_MODE = S_IFDIR | 0o755;

export interface RecordPlan {
  identifier: Buffer;
  /** Where the record points. */
  target: Child;
  su?: SystemUse;
}

export function isoRecordPlans(dir: DirNode, root: DirNode, date7: Buffer): RecordPlan[] {
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

export function jolietRecordPlans(dir: DirNode, root: DirNode): RecordPlan[] {
  const parent = dir.parent ?? root;
  const sorted = children(dir).sort((a, b) => a.node.jolietId.compare(b.node.jolietId));
  return [
    { identifier: Buffer.of(0), target: { kind: "dir", node: dir } },
    { identifier: Buffer.of(1), target: { kind: "dir", node: parent } },
    ...sorted.map((c) => ({ identifier: c.node.jolietId, target: c })),
  ];
}

export function targetFields(
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
