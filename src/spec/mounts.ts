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
  type?: "9p" | "virtiofs";
}

const OPTIONS = /^(ro|rw|9p|virtiofs)(,(ro|rw|9p|virtiofs))*$/;

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

/** `-v HOST:GUEST[:OPTIONS]`, OPTIONS a comma list of ro|rw and 9p|virtiofs. */
export function parseVolumeFlag(raw: string): Mount {
  let body = raw;
  let readOnly = false;
  let type: Mount["type"];
  const last = raw.lastIndexOf(":");
  const tail = raw.slice(last + 1);
  if (last > 0 && OPTIONS.test(tail) && raw.slice(0, last).includes(":")) {
    body = raw.slice(0, last);
    for (const option of tail.split(",")) {
      if (option === "ro") readOnly = true;
      else if (option === "rw") readOnly = false;
      else type = option as Mount["type"];
    }
  }
  const colon = body.lastIndexOf(":");
  if (colon <= 0 || colon === body.length - 1) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `-v ${raw}: expected HOST_DIR:GUEST_DIR[:ro][,virtiofs]`,
      {
        hint: "e.g. -v ./src:/work, -v /data:/data:ro or -v /data:/data:ro,virtiofs",
      },
    );
  }
  return {
    source: resolve(body.slice(0, colon)),
    target: body.slice(colon + 1),
    readOnly,
    ...(type === undefined ? {} : { type }),
  };
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
