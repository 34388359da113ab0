/**
 * The process table on Linux: /proc/<pid>/stat gives a process's name, state, start time and
 * CPU time in one read; /proc/<pid>/status its resident memory. Parsing is pure (captured
 * files in the unit tests); reading goes through one function the tests replace.
 */
import { readFileSync } from "node:fs";
import { CorralError } from "../errors.js";
import {
  isProcessId,
  type ProcessInfo,
  type ProcessTable,
  type ProcessUsage,
  sendSignal,
} from "./processes.js";

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux we target. */
const CLK_TCK = 100;

/** TASK_COMM_LEN is 16 with the terminating NUL. */
const COMM_LENGTH = 15;

export interface ProcStat {
  /** Field 2, comm, without its parentheses. */
  name: string;
  /** Field 3: R, S, D, Z (zombie), X (dead), ... */
  state: string;
  /** Field 22, in clock ticks since boot. */
  startTime: string;
  /** Fields 14 + 15, utime + stime, in clock ticks. */
  cpuTicks: number;
}

/** One /proc/<pid>/stat line (proc(5)); undefined when it does not have that shape. */
export function parseProcStat(text: string): ProcStat | undefined {
  // comm may contain spaces and parentheses: it runs from the first '(' to the last ')'.
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(" ");
  // rest[0] is field 3; field N is rest[N - 3].
  const state = rest[0];
  const startTime = rest[19];
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (state === undefined || state === "" || startTime === undefined || !/^\d+$/.test(startTime)) {
    return undefined;
  }
  return {
    name: text.slice(open + 1, close),
    state,
    startTime,
    cpuTicks: Number.isFinite(utime + stime) ? utime + stime : 0,
  };
}

/** VmRSS of /proc/<pid>/status in bytes; kernel threads have none (0). */
export function parseVmRssBytes(status: string): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? "0") * 1024;
}

/** Reads a file under /proc, throwing like readFileSync (ENOENT: no such process). */
export type ProcReader = (path: string) => string;

const readProcFile: ProcReader = (path) => readFileSync(path, "utf8");

export function linuxProcessTable(read: ProcReader = readProcFile): ProcessTable {
  let procMounted = false;
  /** Without /proc every pid would look dead: say so instead. */
  const assertProcMounted = () => {
    if (procMounted) return;
    try {
      read("/proc/self/stat");
      procMounted = true;
    } catch (err) {
      throw new CorralError("UNSUPPORTED", "cannot read /proc: process liveness is unknown", {
        hint: "mount procfs at /proc (corral checks its VMs' processes there)",
        cause: err,
      });
    }
  };
  const stat = (pid: number): ProcStat | undefined => {
    if (!isProcessId(pid)) return undefined;
    let text: string;
    try {
      text = read(`/proc/${pid}/stat`);
    } catch {
      assertProcMounted();
      return undefined;
    }
    return parseProcStat(text);
  };
  return {
    platform: "linux",
    nameLength: COMM_LENGTH,
    info(pid: number): ProcessInfo | undefined {
      const s = stat(pid);
      if (s === undefined || s.state === "Z" || s.state === "X") return undefined;
      return { startTime: s.startTime, name: s.name };
    },
    usage(pid: number): ProcessUsage | undefined {
      const s = stat(pid);
      if (s === undefined) return undefined;
      let status: string;
      try {
        status = read(`/proc/${pid}/status`);
      } catch {
        return undefined;
      }
      return {
        cpuMs: Math.round((s.cpuTicks * 1000) / CLK_TCK),
        rssBytes: parseVmRssBytes(status),
      };
    },
    signal: sendSignal,
  };
}
