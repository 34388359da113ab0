/**
 * Restoring a snapshot as a new VM: its own disk overlays over the snapshot's frozen disks,
 * its own sockets, sidecar and MAC; the backend loads the saved state (boot.ts restore mode)
 * and the guest's RNG reseeds itself where the backend changes its generation id. The
 * snapshot is checked first: a damaged or incompatible one leaves no VM behind. Port forwards
 * are not carried over (they would collide with the source's).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { acquireLock } from "../base/lock.js";
import { CorralError } from "../errors.js";
import { snapshotPaths } from "../paths/layout.js";
import { parseSpec } from "../spec/schema.js";
import { bootVm } from "./boot.js";
import { newLife } from "./create.js";
import { releaseResources } from "./reconcile.js";
import { type VmRecord, writeRecord } from "./record.js";
import type { Runtime } from "./runtime.js";
import { readSnapshotMeta, verifySnapshotFiles } from "./snapshot-store.js";
import { waitForShimGone } from "./stop.js";
import { claimInstanceDir, generateName, type LoadedVm, removeInstanceDir } from "./store.js";

export interface RestoreOptions {
  name?: string;
  signal?: AbortSignal;
  pool?: string;
}

export async function restoreSnapshot(
  rt: Runtime,
  snapshot: string,
  options: RestoreOptions = {},
): Promise<LoadedVm> {
  const meta = readSnapshotMeta(snapshot);
  await verifySnapshotFiles(meta, { full: false });
  const driver = rt.drivers.get(meta.backend);
  const vmmVersion = await driver.version();
  if (vmmVersion !== meta.vmmVersion) {
    throw new CorralError(
      "SNAPSHOT_INCOMPATIBLE",
      `snapshot "${snapshot}" was taken with ${meta.vmmVersion}; this host runs ${vmmVersion}`,
      {
        hint: `the ${driver.name} backend's saved state is tied to the VMM's version: restore it on a host with the same version, or boot a fresh VM and take a new snapshot`,
      },
    );
  }
  if (!existsSync(meta.record.image.kernel) || !existsSync(meta.record.image.initrd)) {
    throw new CorralError(
      "SNAPSHOT_INCOMPATIBLE",
      `the guest image snapshot "${snapshot}" was taken with (${meta.record.image.version}) is no longer cached`,
      {
        hint: 'the kernel must be the one the memory was saved with; take a new snapshot after "corral setup"',
      },
    );
  }
  const spec = parseSpec({ ...meta.record.spec, name: options.name ?? generateName(), ports: [] });
  const { id, paths } = claimInstanceDir(
    spec.name,
    `choose another --name, or remove it with "corral rm -f ${spec.name}"`,
  );
  // Locked from its first moment: no other command may start this VM before it is ready,
  // and a failure removes it while still holding the lock.
  const release = await acquireLock(paths.lock, `VM "${spec.name}"`);
  const files = snapshotPaths(snapshot);
  try {
    const record: VmRecord = {
      ...meta.record,
      id,
      name: spec.name,
      spec,
      ...newLife(`restored from snapshot ${snapshot}`),
      disks: [],
      restoredFrom: snapshot,
      pool: options.pool === undefined ? undefined : { name: options.pool, taken: false },
    };
    if (meta.rootDisk !== undefined && meta.record.rootDisk !== undefined) {
      const overlay = await driver.disks.overlay(
        files.file(meta.rootDisk.file),
        join(paths.dir, driver.disks.fileName("root")),
        { baseFormat: meta.record.rootDisk.overlayFormat ?? "qcow2" },
      );
      record.rootDisk = {
        ...meta.record.rootDisk,
        overlay: overlay.path,
        overlayFormat: overlay.format,
      };
    }
    for (const [i, disk] of meta.disks.entries()) {
      if (!disk.owned) {
        record.disks.push({ path: disk.path, format: disk.format, readOnly: true, owned: false });
        continue;
      }
      const source = meta.record.disks[i];
      const overlay = await driver.disks.overlay(
        files.file(disk.file),
        join(paths.dir, driver.disks.fileName(`disk${i}`)),
        { baseFormat: source?.format ?? "qcow2" },
      );
      record.disks.push({ ...overlay, readOnly: false, owned: true });
    }
    writeRecord(paths.config, record);
    const booted = await bootVm(rt, record, paths, {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      mode: { kind: "restore", dir: files.dir, files: meta.state },
    });
    return { record: booted, paths };
  } catch (err) {
    // restore created this VM: one that never became ready is of no use to keep.
    releaseResources(paths);
    await waitForShimGone(paths);
    removeInstanceDir(paths, id);
    throw err;
  } finally {
    release();
  }
}
