/**
 * Picks the accelerator. /dev/kvm opening is NOT enough: on nested or paravirtual hosts it
 * opens yet guests die with KVM emulation failures (measured on our CI machines), so KVM
 * needs vmx/svm in /proc/cpuinfo too. HVF on macOS; TCG everywhere else.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { CorralError } from "../../errors.js";
import type { Accelerator } from "../../spec/schema.js";

export interface AcceleratorChoice {
  accel: "kvm" | "hvf" | "tcg";
  reason: string;
}

export interface HostProbe {
  platform: NodeJS.Platform;
  kvmDeviceUsable: boolean;
  cpuFlags: string;
}

export function probeHost(): HostProbe {
  let kvmDeviceUsable = false;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    kvmDeviceUsable = true;
  } catch {
    kvmDeviceUsable = false;
  }
  let cpuFlags = "";
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    cpuFlags = /^flags\s*:(.*)$/m.exec(info)?.[1] ?? "";
  } catch {
    cpuFlags = "";
  }
  return { platform: process.platform, kvmDeviceUsable, cpuFlags };
}

export function chooseAccelerator(
  requested: Accelerator,
  probe: HostProbe = probeHost(),
): AcceleratorChoice {
  const hardwareVirt = /\b(vmx|svm)\b/.test(probe.cpuFlags);
  if (requested === "tcg") return { accel: "tcg", reason: "requested (accel: tcg)" };
  if (requested === "hvf") {
    if (probe.platform !== "darwin") {
      throw new CorralError("UNSUPPORTED", "accel hvf is only available on macOS", {
        hint: "use accel auto or tcg",
        field: "accel",
      });
    }
    return { accel: "hvf", reason: "requested (accel: hvf)" };
  }
  if (requested === "kvm") {
    if (!probe.kvmDeviceUsable) {
      throw new CorralError("UNSUPPORTED", "accel kvm: /dev/kvm is missing or not accessible", {
        hint: "add your user to the kvm group, or use accel tcg",
        field: "accel",
      });
    }
    return { accel: "kvm", reason: "requested (accel: kvm)" };
  }
  if (probe.platform === "darwin") return { accel: "hvf", reason: "macOS host" };
  if (probe.kvmDeviceUsable && hardwareVirt) {
    return { accel: "kvm", reason: "/dev/kvm is usable and the CPU has vmx/svm" };
  }
  if (probe.kvmDeviceUsable) {
    return {
      accel: "tcg",
      reason:
        "/dev/kvm opens but the CPU exposes no vmx/svm (nested or paravirtual host); using software emulation",
    };
  }
  return { accel: "tcg", reason: "no /dev/kvm; using software emulation" };
}
