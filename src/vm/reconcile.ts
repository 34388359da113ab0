/**
 * Brings a VM's record in line with reality. VMs outlive the CLI, so any command may be the
 * first to learn that a VMM died: it then records `failed` (or `stopped` when a stop was
 * asked for), makes sure no sidecar survives, and removes the VM's sockets.
 */
import { rmSync } from "node:fs";
import { defaultProcessTable } from "../base/process.js";
import { isAlive, isNamed, type ProcessTable } from "../base/processes.js";
import type { InstancePaths } from "../paths/layout.js";
import { releaseTap } from "./network.js";
import { ACTIVE_STATES, type VmRecord, writeRecord } from "./record.js";
import { readShimState, readVmmExit } from "./supervisor.js";

/** Longer than any shim takes to report (it forks and writes shim.json within milliseconds). */
const STALE_START_MS = 30_000;

/**
 * The shim's own pid is recorded without a start time: a live pid is checked against its
 * name before it is signalled (it may have been reused). The kernel keeps 15 bytes of a name
 * on Linux, 16 on macOS; isNamed cuts these to match. The VMM and the sidecar (whatever the
 * backend runs) are checked by their start times.
 */
const SHIM = "vmm-shim";

export function reconcile(
  record: VmRecord,
  paths: InstancePaths,
  table: ProcessTable = defaultProcessTable(),
): VmRecord {
  if (!ACTIVE_STATES.includes(record.state)) return record;
  const shim = readShimState(paths);
  const exit = readVmmExit(paths);
  if (exit === undefined) {
    if (shim === undefined) {
      // The shim reports within milliseconds of its launch: a start that has been silent for
      // longer died before launching it (callers reconcile under the VM's lock, so no start
      // of this VM is running now).
      const startedMs = Date.parse(record.startedAt ?? "");
      if (record.state !== "starting" || !(Date.now() - startedMs > STALE_START_MS)) return record;
    } else if (
      isAlive(table, shim.vmmPid, shim.vmmStartTime) ||
      isNamed(table, shim.shimPid, SHIM)
    ) {
      // A live shim is still recording how its VMM ended: exit.json comes in a moment.
      return record;
    }
  }
  const reason =
    exit?.reason ??
    (shim === undefined
      ? "the start was interrupted before the VMM was launched"
      : "the VMM shim was killed (no exit record); its VMM died with it");
  const cleanExit = exit?.vmm?.exitCode === 0;
  const stopped = record.desired === "stopped" || cleanExit;
  const next: VmRecord = {
    ...record,
    state: stopped ? "stopped" : "failed",
    reason: stopped && record.desired === "stopped" ? record.reason : reason,
    stoppedAt: new Date(exit?.atMs ?? Date.now()).toISOString(),
  };
  releaseResources(paths, table);
  writeRecord(paths.config, next);
  return next;
}

/** Kills whatever this VM's shim still runs and removes its run-time files. */
export function releaseResources(
  paths: InstancePaths,
  table: ProcessTable = defaultProcessTable(),
): void {
  const shim = readShimState(paths);
  if (shim !== undefined) {
    if (isAlive(table, shim.vmmPid, shim.vmmStartTime)) table.signal(shim.vmmPid, "SIGKILL");
    // The shim's death normally took the sidecar along (PDEATHSIG on Linux, the shim's
    // watcher on macOS); a live pid here may be reused, so its start time must match.
    if (
      shim.sidecarPid !== null &&
      typeof shim.sidecarStartTime === "string" &&
      isAlive(table, shim.sidecarPid, shim.sidecarStartTime)
    ) {
      table.signal(shim.sidecarPid, "SIGKILL");
    }
    killIfNamed(table, shim.shimPid, SHIM);
  }
  rmSync(paths.runDir, { recursive: true, force: true });
  rmSync(paths.readyFile, { force: true });
  releaseTap(paths);
}

function killIfNamed(table: ProcessTable, pid: number, executable: string): void {
  if (isNamed(table, pid, executable)) table.signal(pid, "SIGKILL");
}
