/**
 * Shared by the VM benchmarks: a private state directory per run (so a bench never sees or
 * touches the user's VMs), cleanup of everything the run started (VMs, pools, the daemon,
 * processes started by hand, scratch files) on success, failure and Ctrl-C, and the
 * statistics the benchmarks print.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonClient } from "../../src/daemon/client.js";
import { stopDaemon } from "../../src/daemon/control.js";
import { listPools, removePool } from "../../src/daemon/pool-client.js";
import { runRoot } from "../../src/paths/layout.js";
import type { Manager } from "../../src/vm/manager.js";

export { median, ms } from "../stats.js";

/**
 * Points corral at a fresh state directory. Call it at the top of the script, before any
 * corral call: layout.ts reads CORRAL_STATE_DIR at call time, so imports may come first.
 */
export function privateStateDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `corral-bench-${prefix}-`));
  process.env.CORRAL_STATE_DIR = dir;
  return dir;
}

type Cleanup = () => Promise<void> | void;

/**
 * Cleanup steps, run last-registered first, once: at the end of `main`, or on SIGINT/SIGTERM.
 * Every step runs even when an earlier one fails.
 */
export class Teardown {
  private readonly steps: { what: string; run: Cleanup }[] = [];
  private done: Promise<void> | undefined;

  constructor() {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        process.stderr.write(`\n${signal}: cleaning up\n`);
        void this.run().finally(() => process.exit(130));
      });
    }
  }

  add(what: string, run: Cleanup): void {
    this.steps.push({ what, run });
  }

  /** A process started by hand: SIGKILLed (its whole group when it leads one). */
  addProcess(what: string, child: ChildProcess): void {
    // Also when this process dies of an uncaught error before the teardown runs.
    process.once("exit", () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    this.add(what, async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGKILL");
      await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 5_000))]);
    });
  }

  /**
   * The whole private state: pools first (so nothing refills), then the daemon, then every VM
   * in the state directory, then the directory itself and its socket directory.
   */
  addCorralState(manager: Manager, stateDir: string): void {
    this.add("state directory", () => {
      rmSync(runRoot(), { recursive: true, force: true });
      rmSync(stateDir, { recursive: true, force: true });
    });
    this.add("VMs", async () => {
      for (const vm of await manager.list()) {
        await manager.remove(vm.name, { force: true }).catch((err: unknown) => {
          process.stderr.write(`cleanup: cannot remove VM ${vm.name}: ${String(err)}\n`);
        });
      }
    });
    this.add("daemon", async () => {
      const daemon = await DaemonClient.ifRunning();
      if (daemon === undefined) return;
      await daemon.close();
      for (const pool of await listPools().catch(() => [])) {
        await removePool(pool.name).catch(() => {});
      }
      await stopDaemon();
    });
  }

  run(): Promise<void> {
    this.done ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.run();
        } catch (err) {
          process.stderr.write(`cleanup (${step.what}) failed: ${String(err)}\n`);
        }
      }
    })();
    return this.done;
  }
}

/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error("percentile of an empty sample");
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export const MiB = 1024 * 1024;

export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** Decimal megabytes per second, as network tools print them. */
export const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(1);

/** Parses `--name value` from the command line, with a default. */
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} takes a positive integer`);
  }
  return value;
}

export const say = (line: string) => process.stdout.write(`${line}\n`);
