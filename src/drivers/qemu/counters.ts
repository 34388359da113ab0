/** QMP's query-blockstats entries in the backend-neutral counter shape. */
import type { DiskCounters } from "../driver.js";

export interface BlockStatsEntry {
  device?: string;
  qdev?: string;
  node_name?: string;
  stats?: { rd_bytes?: number; wr_bytes?: number; rd_operations?: number; wr_operations?: number };
}

export function diskCounters(entries: readonly BlockStatsEntry[]): DiskCounters[] {
  return entries
    .filter((e) => e.stats !== undefined)
    .map((e) => ({
      device: e.device || e.qdev || e.node_name || "?",
      readBytes: e.stats?.rd_bytes ?? 0,
      writtenBytes: e.stats?.wr_bytes ?? 0,
      readOps: e.stats?.rd_operations ?? 0,
      writeOps: e.stats?.wr_operations ?? 0,
    }));
}
