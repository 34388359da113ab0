/**
 * The feature record, read: a spec asking for something its backend cannot do is refused
 * here, before any file or process exists, naming the backend and the field.
 */
import { CorralError } from "../errors.js";
import { parseNetworkMode } from "../spec/network.js";
import type { VmSpec } from "../spec/schema.js";
import type { Driver, DriverFeatures, SpecProblem } from "./driver.js";

export function featureProblems(spec: VmSpec, features: DriverFeatures): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const refuse = (field: string, message: string, hint?: string) =>
    problems.push({ field, message, ...(hint === undefined ? {} : { hint }) });
  if (!features.hosts.includes(process.platform)) {
    refuse(
      "backend",
      `does not run on ${process.platform}`,
      `it runs on ${features.hosts.join(", ")}`,
    );
  }
  if (features.machines.length > 0 && !features.machines.includes(spec.machine)) {
    refuse("machine", `has no "${spec.machine}" machine`, `use ${features.machines.join(" or ")}`);
  }
  if (spec.accel !== "auto" && !features.accelerators.includes(spec.accel)) {
    refuse("accel", `cannot use ${spec.accel}`, `use auto or ${features.accelerators.join(", ")}`);
  }
  const network = parseNetworkMode(spec.network).kind;
  if (!features.networks.includes(network)) {
    refuse("network", `has no ${network} networking`, `use ${features.networks.join(", ")}`);
  }
  for (const [i, mount] of spec.mounts.entries()) {
    if (!features.sharedFolders.includes(mount.type)) {
      refuse(
        `mounts[${i}]`,
        `cannot share folders over ${mount.type}`,
        features.sharedFolders.length === 0
          ? "copy files in instead"
          : `use ${features.sharedFolders.join(" or ")}`,
      );
    }
  }
  if (!features.firmware.includes(spec.firmware)) {
    refuse("firmware", `cannot boot with ${spec.firmware} firmware`);
  }
  if (spec.cdrom !== undefined && !features.cdrom) refuse("cdrom", "cannot attach a CD-ROM");
  if (spec.cloudImage !== undefined && !features.cloudImages) {
    refuse("cloudImage", "cannot boot cloud images", "run an OCI image instead");
  }
  return problems;
}

/** Throws the first problem of the feature record and the driver's own checks, if any. */
export function validateForDriver(spec: VmSpec, driver: Driver): void {
  const [problem] = [...featureProblems(spec, driver.features), ...driver.validate(spec)];
  if (problem === undefined) return;
  throw new CorralError(
    "UNSUPPORTED",
    `${problem.field}: the ${driver.name} backend ${problem.message}`,
    {
      ...(problem.hint === undefined ? {} : { hint: problem.hint }),
      field: problem.field,
      details: { backend: driver.name },
    },
  );
}
