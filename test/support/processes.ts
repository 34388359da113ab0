import { readdirSync, readFileSync } from "node:fs";

/** Pids of processes whose command line mentions `needle` (to prove nothing was orphaned). */
export function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // exited
    }
  }
  return pids.filter((pid) => pid !== process.pid);
}
