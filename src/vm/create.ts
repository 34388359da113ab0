/**
 * Creating a VM (validated spec, images resolved, disks made by the backend, a stopped
 * record) and cloning a stopped one. Nothing is left behind when either fails.
 */
import { existsSync, constants as fsConstants, rmSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { acquireLock } from "../base/lock.js";
import type { Driver } from "../drivers/driver.js";
import { validateForDriver } from "../drivers/validate.js";
import { CorralError, throwIfCancelled } from "../errors.js";
import { DEFAULT_IMAGE_NAME, findDefaultImage } from "../images/default-image.js";
import type { ImageInfo } from "../images/image-info.js";
import { findOciImage, type OciImage } from "../images/oci-store.js";
import { switchLockPath } from "../paths/layout.js";
import { parseNetworkMode } from "../spec/network.js";
import { parseSpec, type VmSpec, type VmSpecInput } from "../spec/schema.js";
import { allocateSwitchAddress, checkHostResources } from "./network.js";
import { type VmRecord, writeRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { requireState } from "./states.js";
import { claimInstanceDir, generateName, type LoadedVm } from "./store.js";

/** Validates the spec and records a stopped VM. */
export async function createVm(
  rt: Runtime,
  input: Partial<VmSpecInput>,
  options: { pool?: string; signal?: AbortSignal } = {},
): Promise<LoadedVm> {
  throwIfCancelled(options.signal);
  const spec = parseSpec({ ...input, name: input.name ?? generateName() });
  const driver = driverOf(rt, { spec });
  validateForDriver(spec, driver);
  const image = resolveBootImage();
  const oci = spec.image === DEFAULT_IMAGE_NAME ? undefined : resolveOciImage(spec.image);
  if (spec.diskSizeMiB !== undefined && oci === undefined && spec.cloudImage === undefined) {
    throw new CorralError("INVALID_SPEC", "diskSizeMiB: the built-in image has no root disk", {
      hint: "diskSizeMiB sizes an image's root disk; add a data disk (disks) instead",
      field: "diskSizeMiB",
    });
  }
  for (const field of ["kernel", "initrd", "cdrom"] as const) {
    const path = spec[field];
    if (path !== undefined && !existsSync(path)) {
      throw new CorralError("INVALID_SPEC", `${field}: ${path} does not exist`, {
        hint: "check the path (it must be absolute and readable by you)",
        field,
      });
    }
  }
  await checkHostResources(spec);
  throwIfCancelled(options.signal);
  const network = parseNetworkMode(spec.network);
  const make = (guestIp: string | undefined) =>
    writeNewRecord(driver, spec, image, oci, guestIp, options.pool);
  if (network.kind !== "switch" || spec.ip !== undefined) return make(spec.ip);
  // Two creates on one switch must not pick the same address.
  const release = await acquireLock(switchLockPath(network.name), `switch "${network.name}"`);
  try {
    return await make(allocateSwitchAddress(network.name));
  } finally {
    release();
  }
}

async function writeNewRecord(
  driver: Driver,
  spec: VmSpec,
  image: ImageInfo,
  oci: OciImage | undefined,
  guestIp: string | undefined,
  pool: string | undefined,
): Promise<LoadedVm> {
  const { id, paths } = claimInstanceDir(
    spec.name,
    `choose another --name, or remove it with "corral rm -f ${spec.name}"`,
  );
  try {
    const record: VmRecord = {
      version: 1,
      id,
      name: spec.name,
      spec,
      state: "stopped",
      reason: "created",
      image: {
        name: image.name,
        version: image.version,
        digest: image.digest,
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: image.cmdline,
      },
      ...(guestIp === undefined ? {} : { guestIp }),
      ...(pool === undefined ? {} : { pool: { name: pool, taken: false } }),
      desired: "stopped",
      createdAt: new Date().toISOString(),
      disks: await prepareDisks(driver, spec.disks, paths.dir),
    };
    const rootFile = join(paths.dir, driver.disks.fileName("root"));
    if (spec.cloudImage !== undefined) {
      const baseFormat = await driver.disks.probe(spec.cloudImage, "cloudImage");
      const overlay = await driver.disks.overlay(spec.cloudImage, rootFile, {
        sizeMiB: spec.diskSizeMiB,
        baseFormat,
      });
      record.cloudDisk = {
        base: spec.cloudImage,
        baseFormat,
        overlay: overlay.path,
        overlayFormat: overlay.format,
      };
    }
    if (spec.firmware === "uefi") {
      if (driver.createFirmwareStore === undefined) {
        throw new CorralError("UNSUPPORTED", `firmware: the ${driver.name} backend has no UEFI`, {
          field: "firmware",
          details: { backend: driver.name },
        });
      }
      await driver.createFirmwareStore(paths.efiVars);
    }
    if (oci !== undefined) {
      const overlay = await driver.disks.overlay(oci.rootfs, rootFile, {
        sizeMiB: spec.diskSizeMiB,
      });
      record.rootDisk = {
        reference: oci.reference,
        manifestDigest: oci.manifestDigest,
        base: oci.rootfs,
        overlay: overlay.path,
        overlayFormat: overlay.format,
      };
      record.imageConfig = oci.config;
    }
    writeRecord(paths.config, record);
    return { record, paths };
  } catch (err) {
    rmSync(paths.dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Copies a stopped VM (locked by the caller): its spec, root overlay and owned disks
 * (reflinked where the filesystem can, else copied; qcow2 files hold only what was written).
 * Disks the source merely attaches by path are attached by the clone too.
 */
export async function cloneVm(source: LoadedVm, target: string): Promise<LoadedVm> {
  const { record, paths: from } = source;
  requireState(record, ["stopped", "failed"], {
    hint: `stop it first: a running VM's disks are not consistent ("corral stop ${record.name}")`,
  });
  const spec = parseSpec({ ...record.spec, name: target });
  if (spec.mac !== undefined || (record.guestIp !== undefined && spec.ip !== undefined)) {
    throw new CorralError("VM_STATE", `VM "${record.name}" has a fixed MAC or address`, {
      hint: "a clone would share it on the network; create a new VM instead",
    });
  }
  const network = parseNetworkMode(spec.network);
  const { id, paths: to } = claimInstanceDir(spec.name, "choose another name for the clone");
  try {
    const copy = async (path: string) => {
      const dest = join(to.dir, relative(from.dir, path));
      await copyFile(path, dest, fsConstants.COPYFILE_FICLONE);
      return dest;
    };
    const clone: VmRecord = {
      ...record,
      id,
      name: spec.name,
      spec,
      ...newLife(`cloned from ${record.name}`),
      // Not a pool member, and its own address on a switch.
      pool: undefined,
      guestIp:
        network.kind === "switch" && spec.ip === undefined
          ? allocateSwitchAddress(network.name)
          : undefined,
      rootDisk:
        record.rootDisk === undefined
          ? undefined
          : { ...record.rootDisk, overlay: await copy(record.rootDisk.overlay) },
      cloudDisk:
        record.cloudDisk === undefined
          ? undefined
          : { ...record.cloudDisk, overlay: await copy(record.cloudDisk.overlay) },
      disks: [],
    };
    for (const disk of record.disks) {
      clone.disks.push(disk.owned ? { ...disk, path: await copy(disk.path) } : disk);
    }
    if (existsSync(from.efiVars)) await copy(from.efiVars);
    writeRecord(to.config, clone);
    return { record: clone, paths: to };
  } catch (err) {
    rmSync(to.dir, { recursive: true, force: true });
    throw err;
  }
}

/** The fields a VM made from another one (clone, restore) starts its own life with. */
export function newLife(reason: string) {
  return {
    state: "stopped" as const,
    reason,
    desired: "stopped" as const,
    createdAt: new Date().toISOString(),
    startedAt: undefined,
    readyAt: undefined,
    stoppedAt: undefined,
    accel: undefined,
  };
}

/** Creates the new empty disks in the instance directory and checks the existing ones. */
async function prepareDisks(
  driver: Driver,
  disks: VmSpec["disks"],
  dir: string,
): Promise<VmRecord["disks"]> {
  const prepared: VmRecord["disks"] = [];
  for (const [i, disk] of disks.entries()) {
    if ("sizeMiB" in disk) {
      const made = await driver.disks.empty(
        join(dir, driver.disks.fileName(`disk${i}`)),
        disk.sizeMiB,
      );
      prepared.push({ ...made, readOnly: false, owned: true });
    } else {
      const format = await driver.disks.probe(disk.path, `disks[${i}]`);
      prepared.push({ path: disk.path, format, readOnly: disk.readOnly, owned: false });
    }
  }
  return prepared;
}

/** The kernel + initramfs every VM boots (OCI images are mounted as the root disk). */
function resolveBootImage(): ImageInfo {
  const image = findDefaultImage();
  if (image === undefined) {
    throw new CorralError("IMAGE_NOT_FOUND", "the default guest image is not built yet", {
      hint: 'run "corral setup" to build it',
    });
  }
  return image;
}

function resolveOciImage(reference: string): OciImage {
  const image = findOciImage(reference);
  if (image === undefined) {
    throw new CorralError("IMAGE_NOT_FOUND", `image "${reference}" has not been pulled`, {
      hint: `pull it with "corral image pull ${reference}" (corral run pulls it for you)`,
    });
  }
  return image;
}
