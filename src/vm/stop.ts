/** Stop (graceful, then killed), kill, and remove: every path releases what the VM held. */
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, signalProcess } from "../base/process.js";
import { CorralError, throwIfCancelled } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";
import { machineContext } from "./context.js";
import { releaseResources } from "./reconcile.js";
import { ACTIVE_STATES, type VmRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { detachHostServices } from "./services.js";
import { requireState } from "./states.js";
import { type LoadedVm, removeInstanceDir, saveRecord } from "./store.js";
import { readShimState, readVmmExit } from "./supervisor.js";

export interface StopOptions {
  /** Milliseconds to wait for a graceful shutdown before killing. */
  timeoutMs?: number;
  /** Aborting cuts the graceful wait short: the VMM is killed at once. */
  signal?: AbortSignal;
}

/** Graceful stop (the backend's way: ACPI power button on QEMU), then SIGKILL after the timeout. */
export async function stopVm(
  rt: Runtime,
  vm: LoadedVm,
  options: StopOptions = {},
): Promise<VmRecord> {
  let { record } = vm;
  const { paths } = vm;
  if (!ACTIVE_STATES.includes(record.state)) return record;
  const wasPaused = record.state === "paused";
  record = { ...record, state: "stopping", desired: "stopped", reason: "stopped by user" };
  saveRecord(rt.events, record, paths);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (timeoutMs > 0 && options.signal?.aborted !== true) {
    try {
      const machine = driverOf(rt, record).open(machineContext(record, paths), inertHost(rt));
      // A frozen guest cannot see the power button.
      if (wasPaused) await machine.resume?.().catch(() => {});
      await machine.requestShutdown();
      await waitForExit(paths, timeoutMs, options.signal);
    } catch {
      // fall through to the kill
    }
  }
  const graceful = readVmmExit(paths)?.vmm?.exitCode === 0;
  record.reason = graceful
    ? "stopped by user (the guest shut down cleanly)"
    : options.signal?.aborted === true
      ? "stopped by user (killed: the wait for a clean shutdown was cancelled)"
      : `stopped by user (killed: no clean shutdown within ${timeoutMs / 1000} s)`;
  return finishStop(rt, record, paths, !graceful);
}

/** Immediate SIGKILL of the VMM. */
export async function killVm(rt: Runtime, vm: LoadedVm): Promise<VmRecord> {
  if (!ACTIVE_STATES.includes(vm.record.state)) return vm.record;
  const record: VmRecord = {
    ...vm.record,
    state: "stopping",
    desired: "stopped",
    reason: "killed by user",
  };
  saveRecord(rt.events, record, vm.paths);
  return finishStop(rt, record, vm.paths, true);
}

/** Removes the VM and everything it owns. Refuses a running VM unless `force`. */
export async function removeVm(rt: Runtime, vm: LoadedVm, force: boolean): Promise<void> {
  const { record, paths } = vm;
  if (!force && ACTIVE_STATES.includes(record.state)) {
    requireState(record, ["stopped", "failed"], {
      hint: `stop it first with "corral stop ${record.name}", or use "corral rm -f ${record.name}"`,
    });
  }
  rt.guests.forget(paths.vsockSocket);
  releaseResources(paths);
  await detachHostServices(rt.services, record);
  await waitForShimGone(paths);
  // Out of sight while still locked: a command waiting for the lock must find no VM.
  removeInstanceDir(paths, record.id);
}

export async function finishStop(
  rt: Runtime,
  record: VmRecord,
  paths: InstancePaths,
  kill: boolean,
): Promise<VmRecord> {
  if (kill) {
    const shim = readShimState(paths);
    if (shim !== undefined && isAlive(shim.vmmPid, shim.vmmStartTime)) {
      signalProcess(shim.vmmPid, "SIGKILL");
    }
    await waitForExit(paths, 5_000).catch(() => {});
  }
  releaseResources(paths);
  await detachHostServices(rt.services, record);
  const next: VmRecord = { ...record, state: "stopped", stoppedAt: new Date().toISOString() };
  saveRecord(rt.events, next, paths);
  return next;
}

export async function waitForExit(
  paths: InstancePaths,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (readVmmExit(paths) === undefined) {
    throwIfCancelled(signal);
    const shim = readShimState(paths);
    if (shim !== undefined && !isAlive(shim.shimPid)) return;
    if (Date.now() > deadline) throw new CorralError("TIMEOUT", "the VM did not stop in time");
    await sleep(10);
  }
}

export async function waitForShimGone(paths: InstancePaths): Promise<void> {
  const shim = readShimState(paths);
  if (shim === undefined) return;
  const deadline = Date.now() + 5_000;
  while (isAlive(shim.shimPid) || isAlive(shim.vmmPid, shim.vmmStartTime)) {
    if (Date.now() > deadline) return;
    await sleep(10);
  }
}

/** For machines opened only to be stopped or paused: no sidecar swaps, no probe. */
export function inertHost(rt: Runtime) {
  return {
    replaceSidecar: async () => {
      throw new CorralError("INTERNAL", "no sidecar swap outside a start or a snapshot");
    },
    probe: {
      setTime: async () => {
        throw new CorralError("INTERNAL", "no agent probe outside a start or a snapshot");
      },
      dropIdle: () => {},
    },
    notice: (message: string) => rt.events.notice(message),
  };
}
