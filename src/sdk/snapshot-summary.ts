/**
 * What a listing shows of a snapshot (`corral snapshot ls`, the REST API): its origin and
 * sizes, without the source VM's full record.
 */
import { type SnapshotMeta, stateBytes } from "../vm/snapshot-store.js";

export interface SnapshotSummary {
  name: string;
  /** The VM it was taken from. */
  source: string;
  createdAt: string;
  /** The saved guest memory and device state. */
  memoryBytes: number;
  /** Frozen disks it owns (the root overlay and the VM's own data disks, not shared images). */
  diskBytes: number;
  /** How long the source VM was paused for it. */
  pausedMs: number;
  image: string;
  /** The VMM version it must be restored with. */
  vmm: string;
}

export function summarizeSnapshot(meta: SnapshotMeta): SnapshotSummary {
  return {
    name: meta.name,
    source: meta.source.name,
    createdAt: meta.createdAt,
    memoryBytes: stateBytes(meta),
    diskBytes:
      (meta.rootDisk?.size ?? 0) + meta.disks.reduce((n, d) => n + (d.owned ? d.size : 0), 0),
    pausedMs: meta.pausedMs,
    image: meta.record.spec.image,
    vmm: meta.vmmVersion,
  };
}
