/**
 * `corral.snapshots`: saved running VMs (memory, devices, disks), restorable as new VMs, any
 * number at once. `vm.snapshot(name)` takes one.
 */
import { throwIfCancelled } from "../errors.js";
import type { Manager } from "../vm/manager.js";
import type { Scope } from "./scope.js";
import { snapshotView } from "./to-view.js";
import type { SnapshotView } from "./views.js";
import type { SignalOptions, Vm } from "./vm.js";
import type { Vms } from "./vms.js";

export { type SnapshotSummary, summarizeSnapshot } from "./snapshot-summary.js";

export interface RestoreSnapshotOptions extends SignalOptions {
  /** The new VM's name (default: generated). */
  name?: string;
}

/** `corral.snapshots`: saved running VMs, restorable as new VMs. */
export class Snapshots {
  /** @internal */
  constructor(
    private readonly manager: Manager,
    private readonly scope: Scope,
    private readonly vms: Vms,
  ) {}

  list(): Promise<SnapshotView[]> {
    return this.scope.run(async () => this.manager.listSnapshots().map(snapshotView));
  }

  /** One snapshot; SNAPSHOT_NOT_FOUND (kind not-found) when there is none. */
  get(name: string): Promise<SnapshotView> {
    return this.scope.run(async () => {
      const found = this.manager.listSnapshots().find((s) => s.name === name);
      // Not listed: let the store say why (not found, or damaged).
      return snapshotView(found ?? (await this.manager.verifySnapshot(name)));
    });
  }

  /** Refused while VMs restored from it (or snapshots of those) still use its disks. */
  remove(name: string): Promise<void> {
    return this.scope.run(() => this.manager.removeSnapshot(name));
  }

  /** Checks every file against its recorded size and SHA-256; SNAPSHOT_DAMAGED when one fails. */
  verify(name: string): Promise<SnapshotView> {
    return this.scope.run(async () => snapshotView(await this.manager.verifySnapshot(name)));
  }

  /**
   * Starts a new VM from the snapshot, ready when this resolves. A restore that fails or is
   * aborted leaves no VM behind.
   */
  restore(name: string, options: RestoreSnapshotOptions = {}): Promise<Vm> {
    const { signal } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const vm = await this.manager.restore(name, {
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(signal === undefined ? {} : { signal }),
      });
      return this.vms.handle(vm.name);
    });
  }
}
