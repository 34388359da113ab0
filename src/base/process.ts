import { readFileSync } from "node:fs";

/** Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a live process from a reused pid. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parens: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state); field 22 is rest[19].
    if (rest[0] === "Z") return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number, startTime?: string): boolean {
  const actual = processStartTime(pid);
  if (actual === undefined) return false;
  return startTime === undefined || actual === startTime;
}

export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}
