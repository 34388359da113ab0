/**
 * This host's process table, and the pid helpers older callers use (thin wrappers over it).
 * New code takes a `ProcessTable` parameter defaulting to `defaultProcessTable()`, so its
 * macOS behaviour can be unit-tested on Linux with a fake.
 */
import { CorralError } from "../errors.js";
import {
  isAlive as aliveIn,
  isNamed as namedIn,
  type ProcessTable,
  startTimeOf,
} from "./processes.js";
import { darwinProcessTable } from "./processes-darwin.js";
import { linuxProcessTable } from "./processes-linux.js";

/**
 * The table for `platform`. Anything but Linux and macOS is refused outright: a table that
 * answered "dead" for every pid would make every lock stale and every running VM failed.
 */
export function processTableFor(platform: NodeJS.Platform): ProcessTable {
  if (platform === "linux") return linuxProcessTable();
  if (platform === "darwin") return darwinProcessTable();
  throw new CorralError("UNSUPPORTED", `corral cannot inspect processes on ${platform}`, {
    hint: "corral runs on Linux and macOS hosts",
  });
}

let host: ProcessTable | undefined;

export function defaultProcessTable(): ProcessTable {
  host ??= processTableFor(process.platform);
  return host;
}

/** Field 22 of /proc/<pid>/stat on Linux, the start second on macOS: tells a live process from a reused pid. */
export function processStartTime(pid: number): string | undefined {
  return startTimeOf(defaultProcessTable(), pid);
}

export function isAlive(pid: number, startTime?: string): boolean {
  return aliveIn(defaultProcessTable(), pid, startTime);
}

/** Alive and running `executable` (its comm, as the kernel truncates it). */
export function isNamed(pid: number, executable: string): boolean {
  return namedIn(defaultProcessTable(), pid, executable);
}

export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  return defaultProcessTable().signal(pid, signal);
}
