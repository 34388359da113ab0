/** What `corral doctor` reports: every dependency, and which accelerator would be used and why. */
import { execFileSync } from "node:child_process";
import { builtinDrivers } from "../drivers/builtin.js";
import type { DriverFeatures } from "../drivers/driver.js";
import { type AcceleratorChoice, chooseAccelerator } from "../drivers/qemu/accel.js";
import { findTool, HOST_TOOLS } from "../host/tools.js";
import { findDefaultImage } from "../images/default-image.js";
import { cacheRoot, stateRoot } from "../paths/layout.js";
import { BACKENDS, type Backend } from "../spec/schema.js";

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** How to fix a failed check. */
  fix?: string;
  /** Only corral's own tests need it: a miss does not make the report fail. */
  optional?: boolean;
}

export interface BackendReport {
  name: Backend;
  /** In this build, and able to run on this host's platform. */
  available: boolean;
  detail: string;
  /** What it can do (drivers/driver.ts DriverFeatures); absent when not in this build. */
  features?: DriverFeatures;
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
  backends: BackendReport[];
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
  for (const driver of builtinDrivers().all()) {
    if (driver.features.hosts.includes(process.platform))
      checks.push(...(driver.checkHost?.() ?? []));
  }
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
    backends: backendReports(),
    accelerator: chooseAccelerator("auto"),
    dirs: { cache: cacheRoot(), state: stateRoot() },
  };
}

/** Every backend corral knows: in this build or not, for this platform or not, and its features. */
function backendReports(): BackendReport[] {
  const drivers = builtinDrivers();
  return BACKENDS.filter((name) => name !== "fake").map((name) => {
    if (!drivers.has(name)) {
      return { name, available: false, detail: "not in this build yet" };
    }
    const { features } = drivers.get(name);
    const available = features.hosts.includes(process.platform);
    return {
      name,
      available,
      detail: available
        ? "available"
        : `runs on ${features.hosts.join(", ")}, not ${process.platform}`,
      features,
    };
  });
}
