/** A VM's record and paths as its driver sees them (drivers/driver.ts VmContext). */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import type { BootImage, VmContext } from "../drivers/driver.js";
import { CorralError } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";
import type { VmRecord } from "./record.js";

export function machineContext(record: VmRecord, paths: InstancePaths): VmContext {
  const guestIp = record.guestIp ?? record.spec.ip;
  const rootDisk = rootDiskOf(record);
  return {
    id: record.id,
    spec: record.spec,
    instanceDir: paths.dir,
    runDir: paths.runDir,
    serialLog: paths.serialLog,
    channelSocket: paths.vsockSocket,
    switchSocket: paths.netSocket,
    image: bootImageOf(record),
    ...(rootDisk === undefined ? {} : { rootDisk }),
    ...(record.cloudDisk === undefined ? {} : { seed: paths.seed }),
    ...(record.spec.firmware === "uefi" ? { efiVars: paths.efiVars } : {}),
    ...(guestIp === undefined ? {} : { guestIp }),
    disks: record.disks,
    mac: macOf(record),
  };
}

/** The NIC's MAC: the user's, or a locally administered one stable for this VM's id. */
export function macOf(record: Pick<VmRecord, "id" | "spec">): string {
  if (record.spec.mac !== undefined) return record.spec.mac;
  const bytes = createHash("sha256").update(record.id).digest().subarray(0, 5);
  return ["02", ...[...bytes].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

function rootDiskOf(record: VmRecord): VmContext["rootDisk"] {
  if (record.cloudDisk !== undefined) {
    if (!existsSync(record.cloudDisk.base)) {
      throw new CorralError(
        "IMAGE_NOT_FOUND",
        `the cloud image of VM "${record.name}" is gone: ${record.cloudDisk.base}`,
        { hint: "put the file back (its overlay holds only this VM's writes), or recreate the VM" },
      );
    }
    return { path: record.cloudDisk.overlay, format: record.cloudDisk.overlayFormat ?? "qcow2" };
  }
  if (record.rootDisk === undefined) return undefined;
  if (!existsSync(record.rootDisk.base)) {
    throw new CorralError(
      "IMAGE_NOT_FOUND",
      `the image of VM "${record.name}" is gone from the cache`,
      {
        hint: `pull ${record.rootDisk.reference} again (same digest), or recreate the VM`,
      },
    );
  }
  return {
    path: record.rootDisk.overlay,
    format: record.rootDisk.overlayFormat ?? "qcow2",
    grow: record.spec.diskSizeMiB !== undefined,
  };
}

function bootImageOf(record: VmRecord): BootImage {
  if (!existsSync(record.image.kernel) || !existsSync(record.image.initrd)) {
    throw new CorralError(
      "IMAGE_NOT_FOUND",
      `the image of VM "${record.name}" is gone from the cache`,
      {
        hint: 'rebuild it with "corral setup", or recreate the VM',
      },
    );
  }
  return record.image;
}
