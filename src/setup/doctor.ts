/** What `corral doctor` reports: every dependency, and which accelerator would be used and why. */
import { execFileSync } from "node:child_process";
import { type AcceleratorChoice, chooseAccelerator } from "../drivers/qemu/accel.js";
import { findVhostDeviceVsock } from "../drivers/qemu/vhost-device-vsock.js";
import { findTool, HOST_TOOLS } from "../host/tools.js";
import { findDefaultImage } from "../images/default-image.js";
import { cacheRoot, stateRoot } from "../paths/layout.js";

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** How to fix a failed check. */
  fix?: string;
  /** Only corral's own tests need it: a miss does not make the report fail. */
  optional?: boolean;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  accelerator: AcceleratorChoice;
  dirs: { cache: string; state: string };
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", timeout: 5_000, stdio: "pipe" })
      .split("\n")[0]!
      .trim();
  } catch {
    return "";
  }
}

export function doctor(): DoctorReport {
  const checks: DoctorCheck[] = [];
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  checks.push({
    name: "node",
    ok: major > 20 || (major === 20 && minor >= 19),
    detail: `v${process.versions.node}`,
    fix: "install Node.js >= 20.19",
  });
  for (const tool of HOST_TOOLS) {
    const path = findTool(tool);
    const version =
      path !== undefined && tool.command.startsWith("qemu-") ? firstLine(path, ["--version"]) : "";
    checks.push({
      name: tool.command,
      ok: path !== undefined,
      ...(tool.dev === true ? { optional: true } : {}),
      detail:
        path === undefined
          ? `missing (${tool.purpose})`
          : `${path}${version === "" ? "" : ` (${version})`}`,
      fix: `apt-get install ${tool.aptPackage}${tool.dev === true ? " (tests only: corral setup --dev)" : ""}`,
    });
  }
  const sidecar = findVhostDeviceVsock();
  checks.push({
    name: "vhost-device-vsock",
    ok: sidecar !== undefined,
    detail: sidecar ?? "missing (the host end of the guest channel for QEMU)",
    fix: 'run "corral setup" (fetched from the Debian archive, SHA-256 verified)',
  });
  const image = findDefaultImage();
  checks.push({
    name: "default image",
    ok: image !== undefined,
    detail:
      image === undefined
        ? "not built"
        : `${image.name} ${image.version} (${image.digest.slice(0, 19)})`,
    fix: 'run "corral setup"',
  });
  for (const check of checks) if (check.ok) delete check.fix;
  return {
    ok: checks.every((c) => c.ok || c.optional === true),
    checks,
    accelerator: chooseAccelerator("auto"),
    dirs: { cache: cacheRoot(), state: stateRoot() },
  };
}
