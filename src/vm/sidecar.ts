/**
 * Replacing a running VM's sidecar (the shim restarts it on SIGUSR1): QEMU's vsock sidecar
 * serves one device in its life, and a snapshot plugs in a new one.
 */
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, isNamed, signalProcess } from "../base/process.js";
import type { MachineHost } from "../drivers/driver.js";
import { CorralError } from "../errors.js";
import type { GuestChannel } from "../guest/channel.js";
import type { InstancePaths } from "../paths/layout.js";
import type { Runtime } from "./runtime.js";
import { readShimState, readVmmExit } from "./supervisor.js";

const SIDECAR_SWAP_TIMEOUT_MS = 10_000;

/** Resolves once the new sidecar runs and `readyPath` exists. */
export async function replaceSidecar(paths: InstancePaths, readyPath: string): Promise<void> {
  const before = readShimState(paths);
  // SIGUSR1's default action kills: never send it to a reused pid.
  if (before === undefined || !isAlive(before.shimPid) || !isNamed(before.shimPid, "vmm-shim")) {
    throw new CorralError("VM_FAILED", "the VM's shim is gone");
  }
  signalProcess(before.shimPid, "SIGUSR1");
  const deadline = Date.now() + SIDECAR_SWAP_TIMEOUT_MS;
  for (;;) {
    const now = readShimState(paths);
    if (
      now !== undefined &&
      now.sidecarPid !== null &&
      now.sidecarPid !== before.sidecarPid &&
      existsSync(readyPath)
    ) {
      return;
    }
    if (readVmmExit(paths) !== undefined) throw new CorralError("VM_FAILED", "the VMM exited");
    if (Date.now() > deadline) {
      throw new CorralError("VM_FAILED", "the sidecar was not replaced within 10 s");
    }
    await sleep(5);
  }
}

/**
 * What the lifecycle lends a running machine (drivers/driver.ts MachineHost): sidecar swaps,
 * the kept agent as its probe (`life()` is the VM's startedAt when first probed), notices.
 */
export function liveHost(
  rt: Runtime,
  name: string,
  paths: InstancePaths,
  channel: GuestChannel,
  life: () => string,
): MachineHost {
  const agent = () => rt.guests.agent(paths.vsockSocket, life(), channel);
  return {
    replaceSidecar: (readyPath) => replaceSidecar(paths, readyPath),
    probe: {
      setTime: (o) => agent().setTime(Date.now(), o),
      dropIdle: () => agent().dropIdle(),
    },
    notice: (message) => rt.events.notice(message, name),
  };
}
