/**
 * The process table on macOS, which has no /proc: ps(1) reads the same kinfo_proc the shim
 * reads with sysctl(KERN_PROC_PID). One ps run answers state, start time and name;
 * resident memory and CPU time are a second run, because on some macOS builds ps refuses
 * those columns ("requires entitlement") and liveness must not depend on them.
 *
 * ps prints the start time in local time with strftime("%c"): it runs with TZ=UTC0 and
 * LC_ALL=C so the text has one fixed shape, which is converted back to seconds since the epoch
 * (the value the shim records as the VMM's start time). Output of any other shape is an error,
 * never "no such process": a wrong "dead" makes every lock stale and every running VM failed.
 */
import { execFileSync } from "node:child_process";
import { CorralError } from "../errors.js";
import {
  isProcessId,
  type ProcessInfo,
  type ProcessTable,
  type ProcessUsage,
  sendSignal,
} from "./processes.js";

/** MAXCOMLEN: p_comm keeps 16 bytes of the executable's file name. */
const COMM_LENGTH = 16;

const PS = "/bin/ps";

/** What one ps run returned: its exit status and standard output. */
export interface PsResult {
  status: number | null;
  stdout: string;
}
export type PsRunner = (args: readonly string[]) => PsResult;

/** `ps -o stat= -o lstart= -o ucomm=`: every column is padded; only ucomm may hold spaces. */
export function infoArgs(pid: number): string[] {
  return ["-ww", "-o", "stat=", "-o", "lstart=", "-o", "ucomm=", "-p", String(pid)];
}

export function usageArgs(pid: number): string[] {
  return ["-o", "rss=", "-o", "time=", "-p", String(pid)];
}

export interface PsProcess {
  /** STAT: its first letter is the state (R, S, I, U, T, Z for a zombie), then flags. */
  state: string;
  /** Seconds since the epoch. */
  startTime: string;
  name: string;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * One line of `ps -o stat= -o lstart= -o ucomm=` under LC_ALL=C TZ=UTC0, e.g.
 * `Ss   Tue Dec  2 10:31:07 2025     vmm-shim        `; undefined for any other shape.
 */
export function parsePsInfo(line: string): PsProcess | undefined {
  const match =
    /^\s*(\S+)\s+[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})(?: +(\S.*?))?\s*$/.exec(
      line.replace(/\n$/, ""),
    );
  if (match === null) return undefined;
  const [, state, month, day, hours, minutes, seconds, year, name] = match;
  const monthIndex = MONTHS.indexOf(month!);
  if (monthIndex < 0) return undefined;
  const ms = Date.UTC(
    Number(year),
    monthIndex,
    Number(day),
    Number(hours),
    Number(minutes),
    Number(seconds),
  );
  // Date.UTC rolls "Feb 31" over into March: a date that does not round-trip is not one.
  const date = new Date(ms);
  if (
    date.getUTCDate() !== Number(day) ||
    Number(hours) > 23 ||
    Number(minutes) > 59 ||
    Number(seconds) > 60
  ) {
    return undefined;
  }
  return { state: state!, startTime: String(Math.floor(ms / 1000)), name: name ?? "" };
}

/** `ps -o rss= -o time=`: resident KiB, then CPU time as minutes:seconds.centiseconds. */
export function parsePsUsage(line: string): ProcessUsage | undefined {
  const match = /^\s*(\d+)\s+(\d+):(\d{2})\.(\d{2})\s*$/.exec(line.replace(/\n$/, ""));
  if (match === null) return undefined;
  const [, rssKiB, minutes, seconds, centis] = match;
  return {
    rssBytes: Number(rssKiB) * 1024,
    cpuMs: (Number(minutes) * 60 + Number(seconds)) * 1000 + Number(centis) * 10,
  };
}

const runPs: PsRunner = (args) => {
  try {
    const stdout = execFileSync(PS, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C", TZ: "UTC0" },
      timeout: 10_000,
    });
    return { status: 0, stdout };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number | null; stdout?: string };
    if (typeof e.status === "number") {
      return { status: e.status, stdout: typeof e.stdout === "string" ? e.stdout : "" };
    }
    // Not run, or killed (the timeout): nothing is known about the process.
    throw new CorralError(
      e.code === "ENOENT" ? "UNSUPPORTED" : "INTERNAL",
      `cannot run ${PS}: process liveness is unknown`,
      { hint: "corral checks its VMs' processes with the system's ps on macOS", cause: err },
    );
  }
};

export function darwinProcessTable(ps: PsRunner = runPs): ProcessTable {
  return {
    platform: "darwin",
    nameLength: COMM_LENGTH,
    info(pid: number): ProcessInfo | undefined {
      if (!isProcessId(pid)) return undefined;
      const { status, stdout } = ps(infoArgs(pid));
      // ps exits 1 and prints nothing when no process matched -p.
      if (status === 1 && stdout.trim() === "") return undefined;
      const parsed = status === 0 ? parsePsInfo(stdout) : undefined;
      if (parsed === undefined) {
        throw new CorralError("INTERNAL", `unexpected output from ${PS} for pid ${pid}`, {
          hint: "report this with the output of: LC_ALL=C TZ=UTC0 ps -o stat= -o lstart= -o ucomm= -p <pid>",
          details: { status, stdout: stdout.slice(0, 500) },
        });
      }
      if (parsed.state.startsWith("Z")) return undefined;
      return { startTime: parsed.startTime, name: parsed.name };
    },
    usage(pid: number): ProcessUsage | undefined {
      if (!isProcessId(pid)) return undefined;
      const { status, stdout } = ps(usageArgs(pid));
      return status === 0 ? parsePsUsage(stdout) : undefined;
    },
    signal: sendSignal,
  };
}
