/**
 * Per-VM root disks: a qcow2 overlay whose backing file is the image's cached ext4. Creation
 * is O(1) in the image's size, and the VM's writes never reach the shared base.
 */
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { promisify } from "node:util";
import { CorralError } from "../../errors.js";
import { requireTool } from "../../host/tools.js";
import type { DiskBackend } from "../driver.js";

const run = promisify(execFile);

/** `sizeMiB`: a virtual size larger than the base (`--disk-size`); default: the base's. */
export async function createOverlay(
  base: string,
  overlay: string,
  sizeMiB?: number,
  baseFormat: "raw" | "qcow2" = "raw",
): Promise<void> {
  const qemuImg = requireTool("qemu-img");
  if (sizeMiB !== undefined) {
    // The base's virtual size (a qcow2 file is smaller than the disk it holds).
    const baseBytes = baseFormat === "raw" ? statSync(base).size : await virtualSize(qemuImg, base);
    if (sizeMiB * 1024 * 1024 < baseBytes) {
      throw new CorralError(
        "INVALID_SPEC",
        `diskSizeMiB: ${sizeMiB} MiB is smaller than the image's ${Math.ceil(baseBytes / 1024 / 1024)} MiB root filesystem`,
        {
          hint: `use ${Math.ceil(baseBytes / 1024 ** 3)}G or more (disks only grow)`,
          field: "diskSizeMiB",
        },
      );
    }
  }
  const size = sizeMiB === undefined ? [] : [`${sizeMiB}M`];
  try {
    await run(
      qemuImg,
      ["create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", base, overlay, ...size],
      {
        timeout: 30_000,
      },
    );
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new CorralError("IMAGE_BUILD", `cannot create the root disk overlay ${overlay}`, {
      hint: stderr === undefined || stderr === "" ? undefined : stderr,
      cause: err,
    });
  }
}

async function virtualSize(qemuImg: string, path: string): Promise<number> {
  const { stdout } = await run(qemuImg, ["info", "--output=json", "-U", path], { timeout: 30_000 });
  const size = (JSON.parse(stdout) as { "virtual-size"?: number })["virtual-size"];
  if (typeof size !== "number") throw new CorralError("INVALID_SPEC", `cannot size ${path}`);
  return size;
}

/** A new, empty qcow2 data disk: sparse, so its size costs nothing until written. */
export async function createEmptyDisk(path: string, sizeMiB: number): Promise<void> {
  const qemuImg = requireTool("qemu-img");
  try {
    await run(qemuImg, ["create", "-q", "-f", "qcow2", path, `${sizeMiB}M`], { timeout: 30_000 });
  } catch (err) {
    throw new CorralError("IMAGE_BUILD", `cannot create the disk ${path}`, { cause: err });
  }
}

/** The format of a user-supplied disk image, read by qemu-img (never guessed from a name). */
export async function probeDiskFormat(path: string, field: string): Promise<"raw" | "qcow2"> {
  const qemuImg = requireTool("qemu-img");
  let info: { format?: string; "backing-filename"?: string; "full-backing-filename"?: string };
  try {
    const { stdout } = await run(qemuImg, ["info", "--output=json", "-U", path], {
      timeout: 30_000,
    });
    info = JSON.parse(stdout) as typeof info;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new CorralError("INVALID_SPEC", `${field}: cannot read the disk image ${path}`, {
      field,
      hint:
        stderr === undefined || stderr === ""
          ? "check the path and that it is a disk image"
          : stderr,
      cause: err,
    });
  }
  // A qcow2 header is data anyone who wrote the file controls (a guest, a download): a
  // backing file in it would make QEMU open that host path for the guest to read.
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  if (backing !== undefined) {
    throw new CorralError("INVALID_SPEC", `${field}: ${path} names a backing file (${backing})`, {
      field,
      hint: `flatten it first: qemu-img convert -O qcow2 ${path} flat.qcow2`,
    });
  }
  if (info.format !== "raw" && info.format !== "qcow2") {
    throw new CorralError("INVALID_SPEC", `${field}: ${path} is a ${info.format} image`, {
      field,
      hint: "convert it with qemu-img convert -O qcow2 (raw and qcow2 are supported)",
    });
  }
  return info.format;
}

/** QEMU attaches qcow2 and raw; every disk corral makes for a VM is a qcow2 file. */
export const qemuDisks: DiskBackend = {
  fileName: (role) => `${role}.qcow2`,
  probe: (path, field) => probeDiskFormat(path, field),
  async overlay(base, dest, options = {}) {
    await createOverlay(base, dest, options.sizeMiB, options.baseFormat ?? "raw");
    return { path: dest, format: "qcow2" };
  },
  async empty(dest, sizeMiB) {
    await createEmptyDisk(dest, sizeMiB);
    return { path: dest, format: "qcow2" };
  },
};
