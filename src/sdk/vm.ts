/**
 * A handle on one VM, by name: `corral.vms.get("web")`. It holds no state of its own (every
 * call reads the VM's record, as the CLI does), so a handle stays valid across processes and
 * restarts, and two handles on one VM agree. Long operations take an AbortSignal; an aborted
 * one rejects with kind `cancelled` (or `timeout` for AbortSignal.timeout()).
 */

import { cancelled, throwIfCancelled } from "../errors.js";
import type { ExecProcess, ExecRequest, ExecResult } from "../protocols/agent/client.js";
import type { Manager } from "../vm/manager.js";
import type { VmStats } from "../vm/stats.js";
import { collect } from "./collect.js";
import { jsonLines, readTail } from "./log-tail.js";
import type { Scope } from "./scope.js";
import { snapshotView, vmView } from "./to-view.js";
import type { SnapshotView, VmView } from "./views.js";

export interface SignalOptions {
  signal?: AbortSignal;
}

export interface VmStopOptions extends SignalOptions {
  /** Milliseconds for a graceful shutdown before the VMM is killed (default 10 s; 0 kills at once). */
  timeoutMs?: number;
}

export interface VmRunOptions extends SignalOptions {
  /** Bytes of stdout and of stderr kept each (default 1 MiB); the rest is read and dropped. */
  maxOutputBytes?: number;
}

/** A finished command and what it wrote. */
export interface CommandOutput extends ExecResult {
  stdout: string;
  stderr: string;
  /** True when stdout or stderr was longer than `maxOutputBytes` and cut there. */
  truncated: boolean;
}

export interface LogTailOptions {
  /** How many bytes from the end of the log to read (default 64 KiB, at most 16 MiB). */
  maxBytes?: number;
}

export interface MemoryTarget {
  targetBytes: number;
  /** What the guest holds now (it gives memory back gradually). */
  actualBytes: number;
}

const DEFAULT_OUTPUT = 1024 * 1024;
const DEFAULT_TAIL = 64 * 1024;
const MAX_TAIL = 16 * 1024 * 1024;

function tailBytes(options: LogTailOptions): number {
  const n = options.maxBytes ?? DEFAULT_TAIL;
  return Number.isSafeInteger(n) && n > 0 ? Math.min(n, MAX_TAIL) : DEFAULT_TAIL;
}

/** A handle on one VM, by name (`corral.vms.get(name)`); every call reads the VM afresh. */
export class Vm {
  /** @internal Handles come from `corral.vms`, `corral.snapshots` and `corral.pools`. */
  constructor(
    readonly name: string,
    private readonly manager: Manager,
    private readonly scope: Scope,
  ) {}

  /** The VM as it is now (its state reconciled with the host's processes). */
  inspect(): Promise<VmView> {
    return this.scope.run(async () => vmView(await this.manager.inspect(this.name)));
  }

  /** Boots the VM and waits until its agent answers; aborting kills the VMM and undoes the start. */
  start(options: SignalOptions = {}): Promise<VmView> {
    const { signal } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      return vmView(await this.manager.start(this.name, signal === undefined ? {} : { signal }));
    });
  }

  /**
   * Asks the guest to shut down, then kills the VMM after `timeoutMs`. An aborted `signal`
   * rejects with `cancelled` (the stop may have happened: `inspect()` tells).
   */
  stop(options: VmStopOptions = {}): Promise<VmView> {
    const { signal, timeoutMs } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const vm = await this.manager.stop(this.name, {
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        ...(signal === undefined ? {} : { signal }),
      });
      throwIfCancelled(signal);
      return vmView(vm);
    });
  }

  /** Kills the VMM at once. */
  kill(): Promise<VmView> {
    return this.scope.run(async () => vmView(await this.manager.kill(this.name)));
  }

  /** Removes the VM and everything it owns; a running VM only with `force`. */
  remove(options: { force?: boolean } = {}): Promise<void> {
    return this.scope.run(() => this.manager.remove(this.name, options));
  }

  /** Freezes the vCPUs (memory stays allocated); `resume()` continues. */
  pause(): Promise<VmView> {
    return this.scope.run(async () => vmView(await this.manager.pause(this.name)));
  }

  resume(): Promise<VmView> {
    return this.scope.run(async () => vmView(await this.manager.resume(this.name)));
  }

  /**
   * Starts a command in the ready VM, with the image's Env, WorkingDir and User as defaults.
   * Its output streams as it comes; aborting `signal` kills it (the agent kills its process
   * group) and `result` rejects with `cancelled`.
   */
  exec(request: ExecRequest, options: SignalOptions = {}): Promise<ExecProcess> {
    const { signal } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const proc = await this.manager.exec(this.name, request);
      if (signal !== undefined) {
        const onAbort = () => proc.abort(cancelled(signal));
        if (signal.aborted) onAbort();
        else {
          signal.addEventListener("abort", onAbort, { once: true });
          const off = () => signal.removeEventListener("abort", onAbort);
          proc.result.then(off, off);
        }
      }
      return proc;
    });
  }

  /** Runs a command to its end and returns its exit status and output (bounded). */
  run(command: string[] | ExecRequest, options: VmRunOptions = {}): Promise<CommandOutput> {
    const request = Array.isArray(command) ? { argv: command } : command;
    const max = options.maxOutputBytes ?? DEFAULT_OUTPUT;
    return this.scope.run(async () => {
      const proc = await this.exec(request, options);
      const stdout = collect(proc.stdout, max);
      const stderr = collect(proc.stderr, max);
      const result = await proc.result;
      return {
        exitCode: result.exitCode,
        signal: result.signal,
        timedOut: result.timedOut,
        stdout: stdout.text(),
        stderr: stderr.text(),
        truncated: stdout.truncated() || stderr.truncated(),
      };
    });
  }

  /**
   * Saves the running VM (memory, devices, disks) as snapshot `name`; it keeps running. An
   * aborted `signal` removes the snapshot again and rejects with `cancelled`.
   */
  snapshot(name: string, options: SignalOptions = {}): Promise<SnapshotView> {
    const { signal } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const meta = await this.manager.snapshot(
        this.name,
        name,
        signal === undefined ? {} : { signal },
      );
      if (signal?.aborted === true) {
        await this.manager.removeSnapshot(name).catch(() => {});
        throw cancelled(signal);
      }
      return snapshotView(meta);
    });
  }

  /** CPU, memory, disk and network use of the active VM. */
  stats(): Promise<VmStats> {
    return this.scope.run(() => this.manager.stats(this.name));
  }

  /** Memory balloon: asks the guest to give memory back down to `bytes`. */
  setMemoryTarget(bytes: number): Promise<MemoryTarget> {
    return this.scope.run(() => this.manager.setMemoryTarget(this.name, bytes));
  }

  /** The end of the serial console's log (kernel and init messages), as text. */
  serialLog(options: LogTailOptions = {}): Promise<string> {
    return this.scope.run(async () => {
      const tail = await readTail(this.manager.serialLogPath(this.name), tailBytes(options));
      return tail.toString("utf8");
    });
  }

  /** The latest egress decisions of the VM's proxy (one object per decision or connection). */
  egressLog(options: LogTailOptions = {}): Promise<Record<string, unknown>[]> {
    const max = tailBytes(options);
    return this.scope.run(async () => {
      const tail = await readTail(this.manager.egressLogPath(this.name), max + 1);
      // One byte more than asked tells whether the first line may be cut.
      return jsonLines(tail.length > max ? tail.subarray(1) : tail, tail.length > max);
    });
  }
}
