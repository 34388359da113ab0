/**
 * Network preparation outside the VMM: checks done when a VM is created (host ports free,
 * shared folders present, TAP usable), the address a VM gets on a switch, and the TAP devices
 * corral creates for a VM and removes with it.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CorralError } from "../errors.js";
import { requireTool } from "../host/tools.js";
import { checkPortsFree } from "../net/host-ports.js";
import type { InstancePaths } from "../paths/layout.js";
import { vmsRoot } from "../paths/layout.js";
import { checkMountSource } from "../spec/mounts.js";
import { parseNetworkMode, SWITCH_SUBNET, switchAddress } from "../spec/network.js";
import type { VmSpec } from "../spec/schema.js";
import { readRecord } from "./record.js";

export async function checkHostResources(spec: VmSpec): Promise<void> {
  for (const [i, mount] of spec.mounts.entries()) checkMountSource(mount, `mounts[${i}] (-v)`);
  await checkPortsFree(spec.ports);
  const mode = parseNetworkMode(spec.network);
  if (mode.kind === "tap" && !tapExists(mode.iface) && process.getuid?.() !== 0) {
    throw new CorralError(
      "INVALID_SPEC",
      `network: TAP device ${mode.iface} does not exist, and only root can create one`,
      {
        hint: `create it as root (ip tuntap add dev ${mode.iface} mode tap user $USER), or run corral as root`,
      },
    );
  }
}

/** The lowest free address on the switch segment, among this state root's VMs. */
export function allocateSwitchAddress(switchName: string): string {
  const taken = new Set<string>();
  let names: string[] = [];
  try {
    names = readdirSync(vmsRoot());
  } catch {
    names = [];
  }
  for (const name of names) {
    try {
      const record = readRecord(join(vmsRoot(), name, "vm.json"), name);
      if (record.spec.network !== `switch:${switchName}`) continue;
      const ip = record.guestIp ?? record.spec.ip;
      if (ip !== undefined) taken.add(ip.split("/")[0]!);
    } catch {
      // not a VM (a create in progress, a removal): it holds no address yet
    }
  }
  for (let host = SWITCH_SUBNET.first; host <= SWITCH_SUBNET.last; host++) {
    const candidate = switchAddress(host);
    if (!taken.has(candidate.split("/")[0]!)) return candidate;
  }
  throw new CorralError("NETWORK", `switch ${switchName} has no free address left`, {
    hint: "give VMs addresses yourself (ip), or remove VMs from this switch",
    field: "ip",
  });
}

export function tapExists(iface: string): boolean {
  return existsSync(join("/sys/class/net", iface));
}

const TAP_OWNED = "tap-owned";

/** Creates the VM's TAP device when it does not exist yet; corral then removes it later. */
export function prepareTap(spec: VmSpec, paths: InstancePaths): void {
  const mode = parseNetworkMode(spec.network);
  if (mode.kind !== "tap" || tapExists(mode.iface)) return;
  if (process.getuid?.() !== 0) {
    throw new CorralError("NETWORK", `TAP device ${mode.iface} does not exist`, {
      hint: `create it as root: ip tuntap add dev ${mode.iface} mode tap user $USER`,
    });
  }
  const ip = requireTool("ip");
  try {
    execFileSync(ip, ["tuntap", "add", "dev", mode.iface, "mode", "tap"], { stdio: "pipe" });
    execFileSync(ip, ["link", "set", mode.iface, "up"], { stdio: "pipe" });
  } catch (err) {
    throw new CorralError("NETWORK", `cannot create TAP device ${mode.iface}`, {
      hint: String((err as { stderr?: Buffer }).stderr ?? err).trim(),
      cause: err,
    });
  }
  writeFileSync(join(paths.dir, TAP_OWNED), mode.iface, { mode: 0o600 });
}

/** Removes the TAP device corral created for this VM (a no-op otherwise). */
export function releaseTap(paths: InstancePaths): void {
  const marker = join(paths.dir, TAP_OWNED);
  let iface: string;
  try {
    iface = readFileSync(marker, "utf8").trim();
  } catch {
    return;
  }
  if (/^[a-zA-Z0-9_.-]{1,15}$/.test(iface) && tapExists(iface)) {
    try {
      execFileSync(requireTool("ip"), ["link", "del", iface], { stdio: "pipe" });
    } catch {
      return; // QEMU may still hold it for a moment; the next reconcile retries
    }
  }
  rmSync(marker, { force: true });
}
