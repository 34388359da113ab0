/**
 * The host's process table, behind one interface so locks, reconcile and stats work the same
 * on every host: Linux reads /proc (processes-linux.ts), macOS asks ps (processes-darwin.ts),
 * and tests pass a fake. Liveness is "this pid runs and started when we recorded": a pid alone
 * may have been reused by an unrelated process since.
 */

export interface ProcessInfo {
  /**
   * Opaque, the same for the whole life of one process and different for a later process
   * that reuses its pid: Linux's start time in clock ticks since boot, macOS's start time in
   * seconds since the epoch. The shim (native/vmm-shim.c) records the same value per host.
   */
  startTime: string;
  /** The kernel's short name of the executable (comm), truncated as the kernel does. */
  name: string;
}

export interface ProcessUsage {
  cpuMs: number;
  rssBytes: number;
}

export interface ProcessTable {
  readonly platform: string;
  /** How many bytes of a name the kernel keeps: 15 on Linux, 16 on macOS (MAXCOMLEN). */
  readonly nameLength: number;
  /**
   * A live process, or undefined when there is none with this pid (a zombie counts as none:
   * it has exited, only its parent has not reaped it). Throws when the table cannot tell,
   * never answers "dead" for "unknown": a wrong "dead" makes every lock stale and every
   * running VM failed.
   */
  info(pid: number): ProcessInfo | undefined;
  /** CPU time and resident memory, or undefined when the process is gone or unreadable. */
  usage(pid: number): ProcessUsage | undefined;
  /** Sends a signal; false when the process does not exist (or is not ours to signal). */
  signal(pid: number, signal: NodeJS.Signals): boolean;
}

/** A pid that names one process: 0 and negative numbers address process groups in kill(2). */
export function isProcessId(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 0;
}

export function startTimeOf(table: ProcessTable, pid: number): string | undefined {
  return table.info(pid)?.startTime;
}

/** Alive, and when `startTime` is given, still the same process (not a reused pid). */
export function isAlive(table: ProcessTable, pid: number, startTime?: string): boolean {
  const info = table.info(pid);
  return info !== undefined && (startTime === undefined || info.startTime === startTime);
}

/**
 * Alive and running `executable` (an ASCII file name, cut where the kernel cuts comm): how a
 * recorded pid whose start time corral does not know (the shim, a sidecar) is told from a
 * reused one before it is signalled.
 */
export function isNamed(table: ProcessTable, pid: number, executable: string): boolean {
  const name = table.info(pid)?.name;
  return name !== undefined && name === executable.slice(0, table.nameLength);
}

/** kill(2) for one process: both hosts' tables signal the same way. */
export function sendSignal(pid: number, signal: NodeJS.Signals): boolean {
  if (!isProcessId(pid)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}
