/**
 * `corral stats`: what a VM costs and does, from three places: the host's process table (the
 * VMM's CPU time and memory, corral's own processes), the backend (disk counters) and the guest agent
 * (the guest's own view of its memory). Guest numbers are untrusted input: parsed, bounded.
 */
import { defaultProcessTable } from "../base/process.js";
import type { ProcessTable, ProcessUsage } from "../base/processes.js";
import type { DiskCounters } from "../drivers/driver.js";

export type { ProcessUsage };

/** CPU time and resident memory of a host process (the host's /proc, or ps on macOS). */
export function processUsage(
  pid: number,
  table: ProcessTable = defaultProcessTable(),
): ProcessUsage | undefined {
  return table.usage(pid);
}

export interface GuestMemory {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
}

/** Parses the guest's /proc/meminfo; fields missing or absurd make the result undefined. */
export function parseMeminfo(text: string): GuestMemory | undefined {
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d{1,15}) kB$`, "m").exec(text);
    return match === null ? undefined : Number(match[1]) * 1024;
  };
  const total = field("MemTotal");
  const available = field("MemAvailable");
  if (total === undefined || available === undefined || available > total) return undefined;
  return { totalBytes: total, availableBytes: available, usedBytes: total - available };
}

export interface VmStats {
  name: string;
  state: string;
  vmm: ProcessUsage & { pid: number };
  /** The shim and the vsock sidecar: what corral itself costs per VM. */
  overhead: { rssBytes: number; cpuMs: number };
  guestMemory?: GuestMemory;
  disks: DiskCounters[];
  /** The guest's interfaces as it counts them (/proc/net/dev), loopback excluded. */
  network: NetCounters[];
  at: string;
}

export interface NetCounters {
  interface: string;
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

/**
 * /proc/net/dev from the guest (untrusted text): at most 64 interfaces, names of the kernel's
 * shape, counters that are plain decimals; anything else is skipped.
 */
export function parseNetDev(text: string): NetCounters[] {
  const out: NetCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const match = /^\s*([A-Za-z0-9_.@-]{1,15}):\s*((?:\d{1,20}\s+){15}\d{1,20})\s*$/.exec(line);
    if (match === null || match[1] === "lo") continue;
    const n = match[2]!.trim().split(/\s+/).map(Number);
    out.push({
      interface: match[1]!,
      rxBytes: n[0]!,
      rxPackets: n[1]!,
      txBytes: n[8]!,
      txPackets: n[9]!,
    });
    if (out.length >= 64) break;
  }
  return out;
}
