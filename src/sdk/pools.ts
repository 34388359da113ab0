/**
 * `corral.pools`: warm pools of ready VMs, kept filled by the per-user daemon of this state
 * directory (started on demand, with this instance's roots).
 */
import { createPool, listPools, removePool, takeFromPool } from "../daemon/pool-client.js";
import type { PoolInput } from "../daemon/pools.js";
import { CorralError } from "../errors.js";
import type { Manager } from "../vm/manager.js";
import type { Scope } from "./scope.js";
import { poolView } from "./to-view.js";
import type { PoolView } from "./views.js";
import type { Vm } from "./vm.js";
import type { Vms } from "./vms.js";

export type { PoolInput };

/** `corral.pools`: warm pools of ready VMs, kept filled by the per-user daemon. */
export class Pools {
  /** @internal */
  constructor(
    private readonly manager: Manager,
    private readonly scope: Scope,
    private readonly vms: Vms,
  ) {}

  /** Defines a pool (a spec to boot, or a snapshot to restore, and a size); the daemon fills it. */
  create(pool: PoolInput): Promise<PoolView> {
    return this.scope.run(async () => poolView(await createPool(pool)));
  }

  list(): Promise<PoolView[]> {
    return this.scope.run(async () => (await listPools()).map(poolView));
  }

  /** Removes the pool and its members that were not handed out. */
  remove(name: string): Promise<void> {
    return this.scope.run(() => removePool(name));
  }

  /**
   * A ready member, now the caller's: running, no longer the pool's (remove it when done;
   * the pool refills). POOL_EMPTY (kind invalid-state) when none is ready.
   */
  take(name: string): Promise<Vm> {
    return this.scope.run(async () => {
      const taken = await takeFromPool(name);
      const vm = await this.manager.inspect(taken).catch(async (err: unknown) => {
        await this.manager.remove(taken, { force: true }).catch(() => {});
        throw err;
      });
      // The daemon's answer names a VM: hand out only one that is this pool's, handed to us.
      if (vm.pool?.name !== name || vm.pool.taken !== true) {
        throw new CorralError(
          "POOL_MISMATCH",
          `the daemon handed out "${taken}", not a member of pool "${name}"`,
        );
      }
      return this.vms.handle(taken);
    });
  }
}
