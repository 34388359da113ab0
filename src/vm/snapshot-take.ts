/**
 * Taking a snapshot, the generic half: the lock, what no backend can carry yet, the VM's
 * disks copied while it is frozen, hashes, snapshot.json, and an atomic rename into place.
 * The backend's half (drivers/<backend>/snapshot.ts) writes its state into the directory.
 */
import { randomBytes } from "node:crypto";
import {
  existsSync,
  constants as fsConstants,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { copyFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { sha256File } from "../base/hash.js";
import { isAlive } from "../base/process.js";
import type { SpecProblem } from "../drivers/driver.js";
import { CorralError, isCorralError, throwIfCancelled } from "../errors.js";
import { snapshotPaths, snapshotsRoot } from "../paths/layout.js";
import { machineContext } from "./context.js";
import { readRecord, type VmRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { liveHost } from "./sidecar.js";
import {
  checkSnapshotName,
  SNAPSHOT_FORMAT,
  type SnapshotMeta,
  writeSnapshotMeta,
} from "./snapshot-store.js";
import { requireState } from "./states.js";
import { finishStop } from "./stop.js";
import { loadVm, saveRecord, withLockedVm } from "./store.js";

/**
 * Saves a ready (or paused) VM's memory, devices and disks as snapshot `snapshot`; the VM
 * goes on running afterwards (paused ones stay paused). Where the backend cannot keep the
 * guest channel across a save (features.snapshots.guestChannelSurvives), agent connections
 * open at that moment are cut.
 */
export async function takeSnapshot(
  rt: Runtime,
  name: string,
  snapshot: string,
  signal?: AbortSignal,
): Promise<SnapshotMeta> {
  throwIfCancelled(signal);
  checkSnapshotName(snapshot);
  const target = snapshotPaths(snapshot);
  if (existsSync(target.dir)) {
    throw new CorralError("SNAPSHOT_EXISTS", `a snapshot named "${snapshot}" already exists`, {
      hint: `choose another name, or remove it with "corral snapshot rm ${snapshot}"`,
    });
  }
  // The guest channel may be replaced during a snapshot: its connections die with it.
  rt.guests.forget(loadVm(name).paths.vsockSocket);
  return withLockedVm(name, async ({ record, paths }) => {
    requireState(record, ["ready", "paused"], {
      hint: `only a running VM can be snapshotted: "corral start ${name}"`,
    });
    const driver = driverOf(rt, record);
    const vm = machineContext(record, paths);
    const channel = driver.channelFor(paths.vsockSocket);
    const machine = driver.open(
      vm,
      liveHost(rt, name, paths, channel, () => record.startedAt ?? ""),
    );
    const snapshotter = driver.features.snapshots === false ? undefined : machine.snapshots;
    if (snapshotter === undefined) {
      throw new CorralError("UNSUPPORTED", `the ${driver.name} backend cannot take snapshots`, {
        hint: "see docs/capabilities.md for what each backend supports",
        field: "backend",
        details: { backend: driver.name },
      });
    }
    refuseIfAny(record, [...genericProblems(record), ...snapshotter.check(vm)]);
    throwIfCancelled(signal);
    const vmmVersion = await driver.version();
    mkdirSync(snapshotsRoot(), { recursive: true, mode: 0o700 });
    sweepDeadSnapshotTemps();
    const tmp = join(
      snapshotsRoot(),
      `.tmp-${snapshot}-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    mkdirSync(tmp, { mode: 0o700 });
    const frozen: Pick<SnapshotMeta, "rootDisk" | "disks"> = { disks: [] };
    try {
      const saved = await snapshotter.save({
        dir: tmp,
        wasPaused: record.state === "paused",
        ...(signal === undefined ? {} : { signal }),
        // Paused, disks flushed: copies made now match the memory saved next.
        whileFrozen: async () => {
          if (record.rootDisk !== undefined) {
            frozen.rootDisk = await frozenCopy(
              record.rootDisk.overlay,
              join(tmp, driver.disks.fileName("root")),
            );
          }
          for (const [i, disk] of record.disks.entries()) {
            frozen.disks.push(
              disk.owned
                ? {
                    owned: true,
                    ...(await frozenCopy(disk.path, join(tmp, driver.disks.fileName(`disk${i}`)))),
                  }
                : { owned: false, path: disk.path, format: disk.format },
            );
          }
        },
      });
      const meta: SnapshotMeta = {
        format: SNAPSHOT_FORMAT,
        name: snapshot,
        createdAt: new Date().toISOString(),
        source: { name: record.name, id: record.id },
        backend: driver.name,
        vmmVersion,
        record,
        state: saved.files,
        ...frozen,
        pausedMs: saved.pausedMs,
      };
      writeSnapshotMeta(tmp, meta);
      renameSync(tmp, target.dir);
      if (saved.lost !== undefined) {
        await loseVm(rt, record, paths, saved.lost);
        throw new CorralError(
          "VM_FAILED",
          `snapshot "${snapshot}" was saved, but VM "${name}" ${saved.lost}`,
          {
            hint: `the snapshot is complete; restore it with "corral restore ${snapshot}"`,
          },
        );
      }
      return meta;
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      const lost = isCorralError(err) ? err.details?.lost : undefined;
      if (typeof lost === "string") await loseVm(rt, record, paths, lost);
      throw err;
    }
  });
}

/** A VM that could not get its guest channel back is of no use: killed, recorded failed. */
async function loseVm(
  rt: Runtime,
  record: VmRecord,
  paths: Parameters<typeof finishStop>[2],
  reason: string,
): Promise<void> {
  await finishStop(rt, { ...record, state: "stopping", reason }, paths, true);
  saveRecord(
    rt.events,
    { ...readRecord(paths.config, record.name), state: "failed", reason },
    paths,
  );
}

/** What no backend's snapshot can carry (yet), refused with the reason rather than saved broken. */
function genericProblems(record: VmRecord): SpecProblem[] {
  const problems: SpecProblem[] = [];
  if (record.cloudDisk !== undefined || record.spec.firmware === "uefi" || record.spec.cdrom) {
    problems.push({
      field:
        record.cloudDisk !== undefined ? "cloudImage" : record.spec.cdrom ? "cdrom" : "firmware",
      message: "snapshots of cloud-image, UEFI and CD-ROM VMs are not supported yet",
      hint: "snapshot VMs of corral's images or of OCI images",
    });
  }
  if (record.spec.network.startsWith("switch:") || record.spec.network.startsWith("tap:")) {
    problems.push({
      field: "network",
      message: "restores would share its MAC and address on the segment",
      hint: "use network none or nat for VMs you snapshot",
    });
  }
  const shared = record.disks.find((d) => !d.owned && !d.readOnly);
  if (shared !== undefined) {
    problems.push({
      field: "disks",
      message: `${shared.path} is attached read-write and is not corral's to copy`,
      hint: "attach it read-only, or use a disk corral created (a size instead of a path)",
    });
  }
  return problems;
}

function refuseIfAny(record: VmRecord, problems: SpecProblem[]): void {
  const [problem] = problems;
  if (problem === undefined) return;
  throw new CorralError(
    "UNSUPPORTED",
    `VM "${record.name}" cannot be snapshotted: ${problem.message}`,
    {
      ...(problem.hint === undefined ? {} : { hint: problem.hint }),
      field: problem.field,
    },
  );
}

/** Copies a disk while the VM is frozen (reflinked where the filesystem can). */
async function frozenCopy(
  from: string,
  to: string,
): Promise<{ file: string; sha256: string; size: number }> {
  await copyFile(from, to, fsConstants.COPYFILE_FICLONE);
  return { file: basename(to), sha256: await sha256File(to), size: statSync(to).size };
}

/** Removes the temp directories of snapshots whose process died mid-way. */
function sweepDeadSnapshotTemps(): void {
  let names: string[] = [];
  try {
    names = readdirSync(snapshotsRoot());
  } catch {
    return;
  }
  for (const name of names) {
    const pid = /^\.tmp-.+-(\d+)-[0-9a-f]{8}$/.exec(name)?.[1];
    if (pid !== undefined && !isAlive(Number(pid))) {
      rmSync(join(snapshotsRoot(), name), { recursive: true, force: true });
    }
  }
}
