/**
 * A process table the tests fill by hand: macOS-like by default (start times in epoch
 * seconds, 16-byte names), so the code paths a Mac takes run here too.
 */
import type { ProcessInfo, ProcessTable, ProcessUsage } from "../../src/base/processes.js";

export interface FakeProcess {
  startTime: string;
  /** The executable's file name; the table truncates it as the kernel does. */
  executable: string;
  zombie?: boolean;
  usage?: ProcessUsage;
}

export class FakeProcessTable implements ProcessTable {
  readonly platform: string;
  readonly nameLength: number;
  readonly processes = new Map<number, FakeProcess>();
  readonly signals: { pid: number; signal: NodeJS.Signals }[] = [];
  /** Called before each lookup: a test runs "another process" here to interleave with us. */
  onInfo: ((pid: number) => void) | undefined;

  constructor(kind: "darwin" | "linux" = "darwin") {
    this.platform = kind;
    this.nameLength = kind === "darwin" ? 16 : 15;
  }

  add(pid: number, process: FakeProcess): this {
    this.processes.set(pid, process);
    return this;
  }

  info(pid: number): ProcessInfo | undefined {
    this.onInfo?.(pid);
    const p = this.processes.get(pid);
    if (p === undefined || p.zombie === true) return undefined;
    return { startTime: p.startTime, name: p.executable.slice(0, this.nameLength) };
  }

  usage(pid: number): ProcessUsage | undefined {
    return this.processes.get(pid)?.usage;
  }

  signal(pid: number, signal: NodeJS.Signals): boolean {
    this.signals.push({ pid, signal });
    const p = this.processes.get(pid);
    if (p === undefined) return false;
    if (signal === "SIGKILL") p.zombie = true;
    return true;
  }
}
