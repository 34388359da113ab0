/**
 * Shared folders: `-v HOST_DIR:GUEST_DIR[:ro]`. The guest path goes on the kernel command
 * line (the guest's init mounts it before the agent reports ready), so it is restricted to
 * characters that survive that trip; system directories cannot be shadowed.
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { CorralError } from "../errors.js";

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

const GUEST_PATH = /^(\/[A-Za-z0-9._@+-]+)+$/;
const RESERVED = ["/proc", "/sys", "/dev", "/run", "/etc", "/bin", "/sbin", "/lib", "/usr"];

/** Returns what is wrong with a guest mount point, or undefined. */
export function guestPathProblem(target: string): string | undefined {
  if (!GUEST_PATH.test(target) || target.split("/").some((p) => p === "." || p === "..")) {
    return `"${target}" must be an absolute path of letters, digits, '.', '_', '-', '@', '+'`;
  }
  const reserved = RESERVED.find((dir) => target === dir || target.startsWith(`${dir}/`));
  if (reserved !== undefined) return `"${target}" would shadow the guest's ${reserved}`;
  return undefined;
}

export function parseVolumeFlag(raw: string): Mount {
  const readOnly = raw.endsWith(":ro");
  const body = readOnly ? raw.slice(0, -3) : raw.endsWith(":rw") ? raw.slice(0, -3) : raw;
  const colon = body.lastIndexOf(":");
  if (colon <= 0 || colon === body.length - 1) {
    throw new CorralError("INVALID_ARGUMENT", `-v ${raw}: expected HOST_DIR:GUEST_DIR[:ro]`, {
      hint: "e.g. -v ./src:/work or -v /data:/data:ro",
    });
  }
  return { source: resolve(body.slice(0, colon)), target: body.slice(colon + 1), readOnly };
}

/** The host directory must exist now; the error names the flag and the path. */
export function checkMountSource(mount: Mount, field: string): void {
  let isDir = false;
  try {
    isDir = statSync(mount.source).isDirectory();
  } catch {
    throw new CorralError(
      "INVALID_SPEC",
      `${field}: host directory ${mount.source} does not exist`,
      {
        hint: `create it first (mkdir -p ${mount.source}) or fix the path`,
      },
    );
  }
  if (!isDir) {
    throw new CorralError("INVALID_SPEC", `${field}: ${mount.source} is not a directory`, {
      hint: "share the directory that contains it",
    });
  }
}
