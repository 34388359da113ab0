/**
 * The Manager: the lifecycle of VMs, one short method per verb over the files of this folder
 * (store, states, create, boot, readiness, stop, guest connections, snapshots, stats, events).
 * Stateless between calls: every method reads the instance directory, reconciles it with the
 * live processes, acts under the VM's lock, and writes the record back atomically. It speaks
 * only the Driver/Machine contract; which backend runs a VM is its spec's `backend`.
 */

import { tryLock } from "../base/lock.js";
import { builtinDrivers } from "../drivers/builtin.js";
import type { Driver } from "../drivers/driver.js";
import type { DriverRegistry } from "../drivers/registry.js";
import { CorralError, cancelled, throwIfCancelled } from "../errors.js";
import { applyImageConfig, commandFor, egressProxyEnv } from "../guest/exec-defaults.js";
import type { InstancePaths } from "../paths/layout.js";
import type { AgentClient, ExecProcess, ExecRequest } from "../protocols/agent/client.js";
import type { VmSpecInput } from "../spec/schema.js";
import { bootVm } from "./boot.js";
import { machineContext } from "./context.js";
import { cloneVm, createVm } from "./create.js";
import { type VmEvent, VmEvents } from "./events.js";
import { GuestConnections } from "./guest.js";
import { reconcile } from "./reconcile.js";
import { ACTIVE_STATES, readRecord, type VmRecord, type VmState, writeRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { type HostServices, noHostServices } from "./services.js";
import { type RestoreOptions, restoreSnapshot } from "./snapshot-restore.js";
import {
  listSnapshots,
  readSnapshotMeta,
  removeSnapshot,
  type SnapshotMeta,
  verifySnapshotFiles,
} from "./snapshot-store.js";
import { takeSnapshot } from "./snapshot-take.js";
import { requireState } from "./states.js";
import type { VmStats } from "./stats.js";
import { collectStats } from "./stats-collect.js";
import { inertHost, killVm, removeVm, type StopOptions, stopVm } from "./stop.js";
import {
  type LoadedVm,
  listVmNames,
  loadVm,
  observe,
  removeUnfinishedCreate,
  saveRecord,
  withLockedVm,
} from "./store.js";
import { readShimState } from "./supervisor.js";

export type ManagerEvent = VmEvent;
export type { StopOptions };

export interface ManagerOptions {
  /** The backends VMs may name (default: the ones this build ships). */
  drivers?: DriverRegistry;
  /** One more driver (tests, embedders), registered under its name. */
  driver?: Driver;
  /** Who serves port forwards, egress and switch ports (the SDK entry passes the daemon). */
  services?: HostServices;
  onEvent?: (event: ManagerEvent) => void;
}

export interface VmInfo extends VmRecord {
  pids?: { shim: number; vmm: number; sidecar: number | null };
  paths: InstancePaths;
}

export { AGENT_KEEP_ALIVE } from "./guest.js";

export class Manager {
  readonly events = new VmEvents();
  private readonly rt: Runtime;

  constructor(options: ManagerOptions = {}) {
    const drivers = options.drivers ?? builtinDrivers();
    const extra = options.driver;
    if (extra !== undefined) drivers.register(extra.name, () => extra);
    if (options.onEvent !== undefined) this.events.on(options.onEvent);
    this.rt = {
      drivers,
      services: options.services ?? noHostServices,
      events: this.events,
      guests: new GuestConnections(),
    };
  }

  /** The backends this Manager can run, with their feature records. */
  get drivers(): DriverRegistry {
    return this.rt.drivers;
  }

  /** Validates the spec and records a stopped VM. Nothing is left behind when it fails. */
  async create(
    input: Partial<VmSpecInput>,
    options: { pool?: string; signal?: AbortSignal } = {},
  ): Promise<VmInfo> {
    return info(await createVm(this.rt, input, options));
  }

  /** Copies a stopped VM's spec and disks under a new name. */
  async clone(source: string, target: string): Promise<VmInfo> {
    return info(await withLockedVm(source, (vm) => cloneVm(vm, target)));
  }

  /** Boots the VM and waits until its agent answers. A VM that never answers is killed. */
  async start(name: string, options: { signal?: AbortSignal } = {}): Promise<VmInfo> {
    return withLockedVm(name, async ({ record, paths }) => {
      if (ACTIVE_STATES.includes(record.state)) {
        throw new CorralError("VM_STATE", `VM "${name}" is already ${record.state}`, {
          hint: `stop it first with "corral stop ${name}"`,
        });
      }
      return info({ record: await bootVm(this.rt, record, paths, options), paths });
    });
  }

  /** Graceful stop, then SIGKILL after the timeout (or at once when `signal` aborts). */
  async stop(name: string, options: StopOptions = {}): Promise<VmInfo> {
    this.rt.guests.forget(loadVm(name).paths.vsockSocket);
    return withLockedVm(name, async (vm) =>
      info({ record: await stopVm(this.rt, vm, options), paths: vm.paths }),
    );
  }

  /** Immediate SIGKILL of the VMM. */
  async kill(name: string): Promise<VmInfo> {
    this.rt.guests.forget(loadVm(name).paths.vsockSocket);
    return withLockedVm(name, async (vm) =>
      info({ record: await killVm(this.rt, vm), paths: vm.paths }),
    );
  }

  /** Removes the VM and everything it owns. Refuses a running VM unless `force`. */
  async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    if (options.force === true && removeUnfinishedCreate(name)) return;
    await withLockedVm(name, (vm) => removeVm(this.rt, vm, options.force === true));
  }

  /** Freezes the VM's vCPUs; `resume` continues it. Memory stays allocated. */
  async pause(name: string): Promise<VmInfo> {
    return this.transition(name, "ready", "paused", (machine) => machine.pause?.());
  }

  /** Continues a paused VM and sets the guest's clock, which stood still while paused. */
  async resume(name: string): Promise<VmInfo> {
    const vm = await this.transition(name, "paused", "ready", (machine) => machine.resume?.());
    // The vCPUs run again whatever happens next; a clock left behind is worth a notice only.
    await this.keptAgent({ record: vm, paths: vm.paths })
      .setTime()
      .catch((err: unknown) =>
        this.events.notice(
          `VM "${name}" resumed, but its clock could not be set: ${String(err)}`,
          name,
        ),
      );
    return vm;
  }

  private async transition(
    name: string,
    from: VmState,
    to: VmState,
    act: (machine: ReturnType<Driver["open"]>) => Promise<void> | undefined,
  ): Promise<VmInfo> {
    return withLockedVm(name, async ({ record, paths }) => {
      requireState(record, [from], {
        hint:
          from === "paused"
            ? "only a paused VM can be resumed"
            : `start it with "corral start ${name}"`,
      });
      const driver = driverOf(this.rt, record);
      if (!driver.features.pause) {
        throw new CorralError("UNSUPPORTED", `the ${driver.name} backend cannot pause VMs`, {
          field: "backend",
          details: { backend: driver.name },
        });
      }
      await act(driver.open(machineContext(record, paths), inertHost(this.rt)));
      const next: VmRecord = { ...record, state: to, reason: undefined };
      saveRecord(this.events, next, paths);
      return info({ record: next, paths });
    });
  }

  /**
   * Saves a running VM as snapshot `snapshot` (see vm/snapshot-take.ts). An abort before the
   * state is written cancels it and puts the VM back as it was.
   */
  snapshot(
    name: string,
    snapshot: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<SnapshotMeta> {
    return takeSnapshot(this.rt, name, snapshot, options.signal);
  }

  /** Starts a new VM from a snapshot (see vm/snapshot-restore.ts). */
  async restore(snapshot: string, options: RestoreOptions = {}): Promise<VmInfo> {
    return info(await restoreSnapshot(this.rt, snapshot, options));
  }

  listSnapshots(): SnapshotMeta[] {
    return listSnapshots();
  }

  /** Refused while VMs (or other snapshots) still back onto its disks. */
  async removeSnapshot(name: string): Promise<void> {
    const users = [
      ...(await this.list()).filter((vm) => vm.restoredFrom === name).map((vm) => `VM ${vm.name}`),
      ...listSnapshots()
        .filter((s) => s.record.restoredFrom === name)
        .map((s) => `snapshot ${s.name}`),
    ];
    if (users.length > 0) {
      throw new CorralError(
        "SNAPSHOT_IN_USE",
        `snapshot "${name}" is in use by ${users.join(", ")}`,
        {
          hint: "their disks are overlays on this snapshot's; remove them first",
        },
      );
    }
    removeSnapshot(name);
  }

  /** Checks every file of a snapshot against its recorded size and SHA-256. */
  async verifySnapshot(name: string): Promise<SnapshotMeta> {
    const meta = readSnapshotMeta(name);
    await verifySnapshotFiles(meta, { full: true });
    return meta;
  }

  /**
   * Marks a ready pool VM as handed out; false if it is not (any more) a free member of
   * `pool` (taken meanwhile, stopped, removed).
   */
  async claimPoolMember(name: string, pool: string): Promise<boolean> {
    let paths: InstancePaths;
    try {
      paths = loadVm(name).paths;
    } catch {
      return false;
    }
    const release = tryLock(paths.lock);
    if (release === undefined) return false;
    try {
      const record = reconcile(readRecord(paths.config, name), paths);
      if (record.state !== "ready" || record.pool?.name !== pool || record.pool.taken) return false;
      writeRecord(paths.config, { ...record, pool: { name: pool, taken: true } });
      return true;
    } finally {
      release();
    }
  }

  /** Memory balloon: the guest gives memory back to the host down to `bytes`. */
  async setMemoryTarget(
    name: string,
    bytes: number,
  ): Promise<{ targetBytes: number; actualBytes: number }> {
    const { record, paths } = this.readyVm(name);
    const driver = driverOf(this.rt, record);
    const balloon = driver.features.balloon
      ? driver.open(machineContext(record, paths), inertHost(this.rt)).balloon
      : undefined;
    if (balloon === undefined) {
      throw new CorralError("UNSUPPORTED", `the ${driver.name} backend has no memory balloon`, {
        field: "backend",
        details: { backend: driver.name },
      });
    }
    const max = record.spec.memory * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes < 64 * 1024 * 1024 || bytes > max) {
      throw new CorralError(
        "INVALID_ARGUMENT",
        `memoryTarget: must be between 64M and the VM's ${record.spec.memory}M`,
        {
          hint: `e.g. ${Math.max(64, Math.floor(record.spec.memory / 2))}M`,
          field: "memoryTarget",
        },
      );
    }
    await balloon.setTarget(bytes);
    return { targetBytes: bytes, actualBytes: await balloon.actual() };
  }

  async inspect(name: string): Promise<VmInfo> {
    const vm = loadVm(name);
    return info({ record: observe(vm), paths: vm.paths });
  }

  async list(): Promise<VmInfo[]> {
    const infos: VmInfo[] = [];
    for (const name of listVmNames()) {
      try {
        infos.push(await this.inspect(name));
      } catch (err) {
        if (!(err instanceof CorralError && err.code === "VM_NOT_FOUND")) throw err;
      }
    }
    return infos;
  }

  /** Resource use of an active VM (see vm/stats.ts for where each number comes from). */
  async stats(name: string): Promise<VmStats> {
    const vm = loadVm(name);
    return collectStats(this.rt, observe(vm), vm.paths);
  }

  /** Manifest digests of the OCI images this machine's VMs boot from (their overlays' bases). */
  async imagesInUse(): Promise<Set<string>> {
    const digests = new Set<string>();
    for (const vm of await this.list()) {
      if (vm.rootDisk !== undefined) digests.add(vm.rootDisk.manifestDigest);
    }
    // A snapshot's frozen root disk backs onto its image's rootfs too.
    for (const snap of listSnapshots()) {
      if (snap.record.rootDisk !== undefined) digests.add(snap.record.rootDisk.manifestDigest);
    }
    return digests;
  }

  /** An agent client for a ready VM. */
  async agent(name: string): Promise<AgentClient> {
    return this.keptAgent(this.readyVm(name));
  }

  /**
   * Runs a command in a ready VM, with its image's Env, WorkingDir and User as defaults. When
   * `signal` aborts, the command's process group is killed and `result` rejects as cancelled.
   */
  async exec(
    name: string,
    req: ExecRequest,
    options: { signal?: AbortSignal } = {},
  ): Promise<ExecProcess> {
    const { signal } = options;
    throwIfCancelled(signal);
    const vm = this.readyVm(name);
    const { record } = vm;
    const env = { ...egressProxyEnv(record.spec), ...record.spec.env };
    const proc = this.keptAgent(vm).exec(applyImageConfig(req, record.imageConfig, env));
    if (signal !== undefined) {
      const onAbort = () => proc.abort(cancelled(signal));
      signal.addEventListener("abort", onAbort, { once: true });
      proc.result.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
    return proc;
  }

  /** The command `run` starts when the user gave `args` (Docker's Entrypoint/Cmd rules). */
  async commandFor(name: string, args: readonly string[]): Promise<string[]> {
    return commandFor(args, loadVm(name).record.imageConfig);
  }

  serialLogPath(name: string): string {
    return loadVm(name).paths.serialLog;
  }

  /** JSON lines, one per egress decision (and one per finished connection). */
  egressLogPath(name: string): string {
    return loadVm(name).paths.egressLog;
  }

  private keptAgent({ record, paths }: LoadedVm): AgentClient {
    const channel = driverOf(this.rt, record).channelFor(paths.vsockSocket);
    return this.rt.guests.agent(paths.vsockSocket, record.startedAt ?? "", channel);
  }

  /** The VM's record and paths, or an error saying why it cannot take commands now. */
  private readyVm(name: string): LoadedVm {
    const vm = loadVm(name);
    const record = observe(vm);
    requireState(record, ["ready"]);
    return { record, paths: vm.paths };
  }
}

function info({ record, paths }: LoadedVm): VmInfo {
  const shim = ACTIVE_STATES.includes(record.state) ? readShimState(paths) : undefined;
  return {
    ...record,
    paths,
    ...(shim === undefined
      ? {}
      : { pids: { shim: shim.shimPid, vmm: shim.vmmPid, sidecar: shim.sidecarPid } }),
  };
}
