/**
 * `corral stats`: what a VM costs and does, from three places: the host's /proc (the VMM's
 * CPU time and memory, corral's own processes), the backend (disk counters) and the guest agent
 * (the guest's own view of its memory). Guest numbers are untrusted input: parsed, bounded.
 */
import { readFileSync } from "node:fs";
import type { DiskCounters } from "../drivers/driver.js";

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux we target. */
const CLK_TCK = 100;

export interface ProcessUsage {
  cpuMs: number;
  rssBytes: number;
}

export function processUsage(pid: number): ProcessUsage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of stat(5): indexes 11 and 12 after the comm.
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? "0");
    return { cpuMs: Math.round((ticks * 1000) / CLK_TCK), rssBytes: rssKiB * 1024 };
  } catch {
    return undefined;
  }
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
