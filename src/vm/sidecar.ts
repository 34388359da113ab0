/**
 * Replacing a running VM's sidecar (the shim restarts it on SIGUSR1): QEMU's vsock sidecar
 * serves one device in its life, and a snapshot plugs in a new one.
 */
import { existsSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, signalProcess } from "../base/process.js";
import { CorralError } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";
import { readShimState, readVmmExit } from "./supervisor.js";

const SIDECAR_SWAP_TIMEOUT_MS = 10_000;

/** Resolves once the new sidecar runs and `readyPath` exists. */
export async function replaceSidecar(paths: InstancePaths, readyPath: string): Promise<void> {
  const before = readShimState(paths);
  // SIGUSR1's default action kills: never send it to a reused pid.
  if (before === undefined || !isAlive(before.shimPid) || !isShim(before.shimPid)) {
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

function isShim(pid: number): boolean {
  return processName(pid) === "vmm-shim";
}

function processName(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}
