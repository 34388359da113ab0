/**
 * Per-VM root disks: a qcow2 overlay whose backing file is the image's cached ext4. Creation
 * is O(1) in the image's size, and the VM's writes never reach the shared base.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { CorralError } from "../errors.js";
import { requireTool } from "../host/tools.js";

const run = promisify(execFile);

export async function createOverlay(base: string, overlay: string): Promise<void> {
  const qemuImg = requireTool("qemu-img");
  try {
    await run(qemuImg, ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay], {
      timeout: 30_000,
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new CorralError("IMAGE_BUILD", `cannot create the root disk overlay ${overlay}`, {
      hint: stderr === undefined || stderr === "" ? undefined : stderr,
      cause: err,
    });
  }
}
