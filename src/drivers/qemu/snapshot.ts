/**
 * QEMU's half of snapshots. Save: unplug the guest channel (vhost-user-vsock cannot migrate),
 * stop the vCPUs, let the lifecycle copy the disks, migrate to a unix socket that corral
 * writes to memory.bin (hashed on the way), then a fresh sidecar and channel. Restore: QEMU
 * reads memory.bin itself through an inherited descriptor (`-incoming fd:3`) while corral
 * hashes the same open file; the vCPUs run only when the hash matches.
 */
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { StreamDigest } from "../../base/hash.js";
import { CorralError, cancelled, throwIfCancelled } from "../../errors.js";
import type {
  AgentProbe,
  SaveContext,
  SnapshotFile,
  Snapshotter,
  SpecProblem,
  VmContext,
} from "../driver.js";
import { withQmp } from "./control.js";
import { MEMORY_FILE } from "./files.js";
import { type ChannelPlugs, plugUntilAnswered, unplugChannel } from "./guest-channel.js";
import { receiveToFile } from "./migration-stream.js";

const SAVE_TIMEOUT_MS = 300_000;

export interface QemuSnapshotDeps extends ChannelPlugs {
  migrationSocket: string;
  probe: AgentProbe;
}

export class QemuSnapshotter implements Snapshotter {
  constructor(
    private readonly vm: VmContext,
    private readonly deps: QemuSnapshotDeps,
  ) {}

  check(vm: VmContext): SpecProblem[] {
    const problems: SpecProblem[] = [];
    if (vm.spec.machine === "microvm") {
      problems.push({
        field: "machine",
        message: "microvm has no hotplug for the guest channel",
        hint: "use the default q35 machine",
      });
    }
    if (vm.spec.mounts.length > 0) {
      problems.push({
        field: "mounts",
        message: "QEMU cannot migrate mounted shared folders",
        hint: "snapshot a VM without shared folders",
      });
    }
    return problems;
  }

  async save(
    ctx: SaveContext,
  ): Promise<{ files: SnapshotFile[]; pausedMs: number; lost?: string }> {
    const { qmpSocket, migrationSocket } = this.deps;
    // Set first: a device_del that was accepted but never confirmed still needs the
    // channel put back.
    let unplugged = false;
    try {
      if (ctx.wasPaused) await withQmp(qmpSocket, (qmp) => qmp.execute("cont"));
      unplugged = true;
      await unplugChannel(qmpSocket);
      await withQmp(qmpSocket, (qmp) => qmp.execute("stop"));
      const pausedAt = Date.now();
      // Paused, and QEMU flushed the disks when it stopped: copies made now are consistent
      // with the memory state saved next.
      await ctx.whileFrozen();
      const sink = await receiveToFile(migrationSocket, join(ctx.dir, MEMORY_FILE));
      let memory: StreamDigest;
      try {
        await migrate(qmpSocket, migrationSocket, ctx.signal);
        memory = await sink.done;
      } finally {
        sink.close();
      }
      const pausedMs = Date.now() - pausedAt;
      const lost = await this.reattach(ctx.wasPaused);
      unplugged = false;
      return {
        files: [{ file: MEMORY_FILE, role: "memory", ...memory }],
        pausedMs,
        ...(lost === undefined ? {} : { lost }),
      };
    } catch (err) {
      if (unplugged) {
        const lost = await this.reattach(ctx.wasPaused);
        if (lost !== undefined) {
          throw new CorralError(
            "VM_FAILED",
            `the snapshot failed and VM "${this.vm.spec.name}" ${lost}`,
            {
              cause: err,
              details: { lost },
            },
          );
        }
      }
      throw err;
    }
  }

  /**
   * After a save: a fresh sidecar (the old one cannot serve a second device), the vCPUs
   * running again, a new guest channel, the clock set. Returns why the VM could not get
   * its channel back (the lifecycle then kills it), or undefined when it is back.
   */
  private async reattach(keepPaused: boolean): Promise<string | undefined> {
    const { qmpSocket } = this.deps;
    try {
      await this.deps.replaceSidecar();
      await withQmp(qmpSocket, (qmp) => qmp.execute("cont"));
      await plugUntilAnswered(this.deps, this.deps.probe);
      if (keepPaused) await withQmp(qmpSocket, (qmp) => qmp.execute("stop"));
      return undefined;
    } catch (err) {
      return `lost its guest channel after a snapshot: ${String(err)}; it was killed`;
    }
  }
}

async function migrate(
  qmpSocket: string,
  migrationSocket: string,
  signal?: AbortSignal,
): Promise<void> {
  await withQmp(qmpSocket, async (qmp) => {
    // The default 128 MiB/s cap made saves ~7x slower (DESIGN.md).
    await qmp.execute("migrate-set-parameters", { "max-bandwidth": 64 * 1024 ** 3 });
    await qmp.execute("migrate", { uri: `unix:${migrationSocket}` });
    const deadline = Date.now() + SAVE_TIMEOUT_MS;
    for (;;) {
      const info = await qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new CorralError(
          "VMM_CONTROL",
          `QEMU could not save the VM: ${info["error-desc"] ?? info.status}`,
        );
      }
      if (signal?.aborted === true) {
        // The VM goes back to running (save() puts its channel back): nothing half-saved stays.
        await qmp.execute("migrate_cancel").catch(() => {});
        throw cancelled(signal);
      }
      if (Date.now() > deadline) {
        await qmp.execute("migrate_cancel").catch(() => {});
        throw new CorralError("TIMEOUT", "saving the VM state took longer than 5 minutes");
      }
      await sleep(10);
    }
  });
}

/**
 * Restore, once QEMU runs with `-incoming fd:3`: waits until it loaded the state while the
 * same file is hashed, refuses a stream that does not match what was saved, then runs the
 * vCPUs and plugs a fresh guest channel (the shim's sidecar is already up).
 */
export async function loadSnapshot(
  dir: string,
  expected: SnapshotFile,
  memoryHash: Promise<StreamDigest>,
  deps: ChannelPlugs & { probe: AgentProbe },
  signal?: AbortSignal,
): Promise<void> {
  const matches = (d: StreamDigest | undefined) =>
    d !== undefined && d.sha256 === expected.sha256 && d.size === expected.size;
  const corrupt = () =>
    new CorralError(
      "SNAPSHOT_DAMAGED",
      `snapshot "${basename(dir)}" is damaged: ${expected.file} does not match its SHA-256 (altered or corrupt)`,
      { hint: `remove it with "corral snapshot rm ${basename(dir)}" and take a new one` },
    );
  try {
    await awaitIncoming(deps.qmpSocket, signal);
  } catch (err) {
    // A VMM that choked on the stream: say it is damaged when it is.
    const digest = await memoryHash.catch(() => undefined);
    if (digest !== undefined && !matches(digest)) throw corrupt();
    throw err;
  }
  if (!matches(await memoryHash)) throw corrupt();
  await withQmp(deps.qmpSocket, (qmp) => qmp.execute("cont"));
  await plugUntilAnswered(deps, deps.probe);
}

async function awaitIncoming(qmpSocket: string, signal?: AbortSignal): Promise<void> {
  await withQmp(qmpSocket, async (qmp) => {
    const deadline = Date.now() + SAVE_TIMEOUT_MS;
    for (;;) {
      throwIfCancelled(signal);
      const status = await qmp.execute<{ status: string; running: boolean }>("query-status");
      if (status.status !== "inmigrate") return;
      if (Date.now() > deadline) {
        throw new CorralError("TIMEOUT", "loading the snapshot took longer than 5 minutes");
      }
      await sleep(5);
    }
  });
}
