/**
 * Warm pools: N VMs kept ready (booted, or restored from a snapshot) so `run --pool` hands
 * one out in milliseconds. Definitions live in `<state>/pools/<name>.json`, members are VMs
 * whose record names the pool, so a daemon restart finds both again. A handed-out VM belongs
 * to whoever took it (run removes it after use); the pool refills in the background, one VM
 * at a time (booting is CPU-bound, and a second boot at once only slows the first).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../base/atomic.js";
import { CorralError } from "../errors.js";
import { poolsRoot } from "../paths/layout.js";
import { parseSpec } from "../spec/schema.js";
import type { Manager, VmInfo } from "../vm/manager.js";
import { ACTIVE_STATES } from "../vm/record.js";

export const POOL_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

const poolSchema = z
  .object({
    name: z
      .string()
      .regex(POOL_NAME_PATTERN, "lowercase letters, digits, '.', '_' or '-' (at most 32)"),
    size: z.number().int().min(1, "at least 1 VM").max(64, "at most 64 VMs"),
    /** How members are made: a spec (without a name) to boot, or a snapshot to restore. */
    spec: z.record(z.string(), z.unknown()).default({}),
    fromSnapshot: z.string().optional(),
    createdAt: z.string().default(() => new Date().toISOString()),
  })
  .strict();
export type PoolDefinition = z.output<typeof poolSchema>;
export type PoolInput = z.input<typeof poolSchema>;

export interface PoolStatus {
  name: string;
  size: number;
  ready: string[];
  starting: number;
  handedOut: number;
  lastError?: string;
  fromSnapshot?: string;
}

export function parsePool(input: unknown): PoolDefinition {
  const result = poolSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = `pool.${issue?.path.join(".") ?? ""}`;
    throw new CorralError("INVALID_SPEC", `${field}: ${issue?.message}`, {
      field,
      hint: "a pool has a name and a size from 1 to 64, e.g. web with 3 VMs",
    });
  }
  const pool = result.data;
  if (pool.fromSnapshot === undefined) {
    // Validate the members' spec now (with a stand-in name), not at the first refill. Its
    // errors name the spec field (pool.spec's), as for a single VM.
    const spec = parseSpec({ ...pool.spec, name: `${pool.name}-000000` });
    if (spec.mac !== undefined || spec.ip !== undefined) {
      const field = spec.mac !== undefined ? "mac" : "ip";
      throw new CorralError("INVALID_SPEC", `${field}: pool VMs cannot share one MAC or address`, {
        field,
        hint: "leave the MAC and address out of a pool's spec; switch VMs get addresses of their own",
      });
    }
    if (spec.ports.length > 0) {
      throw new CorralError("INVALID_SPEC", "ports: pool VMs cannot share host ports", {
        field: "ports",
        hint: "leave port forwards out of a pool's spec; forward ports to a VM you create yourself",
      });
    }
  }
  return pool;
}

export class Pools {
  private readonly pools = new Map<string, PoolDefinition>();
  private readonly starting = new Map<string, number>();
  private readonly errors = new Map<string, string>();
  private readonly handedOut = new Map<string, number>();
  private filling: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly manager: Manager,
    private readonly log: (message: string, fields?: Record<string, unknown>) => void,
  ) {}

  /** Pools defined before this daemon started. */
  load(): void {
    let files: string[] = [];
    try {
      files = readdirSync(poolsRoot()).filter((f) => f.endsWith(".json"));
    } catch {
      files = [];
    }
    for (const file of files) {
      try {
        const pool = parsePool(JSON.parse(readFileSync(join(poolsRoot(), file), "utf8")));
        this.pools.set(pool.name, pool);
      } catch (err) {
        this.log("unreadable pool definition", { file, error: String(err) });
      }
    }
  }

  get size(): number {
    return this.pools.size;
  }

  async create(input: PoolInput): Promise<PoolStatus> {
    const pool = parsePool(input);
    if (this.pools.has(pool.name)) {
      throw new CorralError("POOL_EXISTS", `a pool named "${pool.name}" already exists`, {
        hint: `remove it first with "corral pool rm ${pool.name}"`,
      });
    }
    mkdirSync(poolsRoot(), { recursive: true, mode: 0o700 });
    writeFileAtomicSync(join(poolsRoot(), `${pool.name}.json`), JSON.stringify(pool), 0o600);
    this.pools.set(pool.name, pool);
    this.kick();
    return this.status(pool.name, await this.members(pool.name));
  }

  /** Removes the pool and its free members (handed-out VMs stay with their users). */
  async remove(name: string): Promise<void> {
    if (!this.pools.delete(name)) throw notFound(name);
    rmSync(join(poolsRoot(), `${name}.json`), { force: true });
    for (const vm of await this.members(name)) {
      await this.manager.remove(vm.name, { force: true }).catch(() => {});
    }
  }

  /** A ready member, now the caller's; the pool starts a replacement. */
  async take(name: string): Promise<string> {
    if (!this.pools.has(name)) throw notFound(name);
    for (const vm of await this.members(name)) {
      if (vm.state === "ready" && (await this.manager.claimPoolMember(vm.name, name))) {
        this.handedOut.set(name, (this.handedOut.get(name) ?? 0) + 1);
        this.kick();
        return vm.name;
      }
    }
    this.kick();
    throw new CorralError("POOL_EMPTY", `pool "${name}" has no ready VM right now`, {
      hint:
        this.errors.get(name) ??
        "it is refilling; retry in a moment, or make the pool larger (corral pool rm + create)",
    });
  }

  async list(): Promise<PoolStatus[]> {
    const out: PoolStatus[] = [];
    for (const name of this.pools.keys()) out.push(this.status(name, await this.members(name)));
    return out;
  }

  private status(name: string, members: VmInfo[]): PoolStatus {
    const pool = this.pools.get(name);
    return {
      name,
      size: pool?.size ?? 0,
      ready: members.filter((vm) => vm.state === "ready").map((vm) => vm.name),
      starting: this.starting.get(name) ?? 0,
      handedOut: this.handedOut.get(name) ?? 0,
      ...(this.errors.has(name) ? { lastError: this.errors.get(name) } : {}),
      ...(pool?.fromSnapshot === undefined ? {} : { fromSnapshot: pool.fromSnapshot }),
    };
  }

  /** Free members (not handed out) of a pool, in any state. */
  private async members(name: string): Promise<VmInfo[]> {
    const all = await this.manager.list();
    return all.filter((vm) => vm.pool?.name === name && !vm.pool.taken);
  }

  /** Starts a refill pass unless one runs; passes run one VM at a time. */
  kick(): void {
    if (this.filling !== undefined || this.stopped) return;
    this.filling = this.fill().finally(() => {
      this.filling = undefined;
    });
  }

  private async fill(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      let work: PoolDefinition | undefined;
      for (const pool of this.pools.values()) {
        const members = await this.members(pool.name);
        for (const vm of members) {
          // Members that died or failed are of no use: make room for fresh ones.
          if (!ACTIVE_STATES.includes(vm.state)) {
            await this.manager.remove(vm.name, { force: true }).catch(() => {});
          }
        }
        const live = members.filter((vm) => ACTIVE_STATES.includes(vm.state)).length;
        if (live < pool.size) {
          work = pool;
          break;
        }
      }
      if (work === undefined) return;
      await this.addMember(work);
    }
  }

  private async addMember(pool: PoolDefinition): Promise<void> {
    const name = `${pool.name}-${randomBytes(3).toString("hex")}`;
    this.starting.set(pool.name, (this.starting.get(pool.name) ?? 0) + 1);
    try {
      if (pool.fromSnapshot !== undefined) {
        await this.manager.restore(pool.fromSnapshot, { name, pool: pool.name });
      } else {
        await this.manager.create({ ...pool.spec, name }, { pool: pool.name });
        try {
          await this.manager.start(name);
        } catch (err) {
          await this.manager.remove(name, { force: true }).catch(() => {});
          throw err;
        }
      }
      if (this.pools.get(pool.name) !== pool) {
        // The pool was removed (or recreated) while this member booted.
        await this.manager.remove(name, { force: true }).catch(() => {});
        return;
      }
      this.errors.delete(pool.name);
      this.log("pool member ready", { pool: pool.name, vm: name });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.errors.set(pool.name, `the last refill failed: ${message}`);
      this.log("pool refill failed", { pool: pool.name, error: message });
      // Do not spin on a pool that cannot start VMs: wait before the next pass.
      await new Promise((resolve) => setTimeout(resolve, 5_000));
    } finally {
      this.starting.set(pool.name, (this.starting.get(pool.name) ?? 1) - 1);
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.filling;
  }
}

function notFound(name: string): CorralError {
  return new CorralError("POOL_NOT_FOUND", `no pool named "${name}"`, {
    hint: 'list pools with "corral pool ls"',
  });
}
