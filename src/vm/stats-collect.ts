/** `corral stats` for one active VM: host processes, the backend's counters, the guest's view. */
import type { DiskCounters } from "../drivers/driver.js";
import { CorralError } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";
import { machineContext } from "./context.js";
import { agentOver } from "./guest.js";
import { ACTIVE_STATES, type VmRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { parseMeminfo, parseNetDev, processUsage, type VmStats } from "./stats.js";
import { inertHost } from "./stop.js";
import { readShimState } from "./supervisor.js";

export async function collectStats(
  rt: Runtime,
  record: VmRecord,
  paths: InstancePaths,
): Promise<VmStats> {
  const name = record.name;
  const shim = ACTIVE_STATES.includes(record.state) ? readShimState(paths) : undefined;
  if (shim === undefined) {
    throw new CorralError("VM_STATE", `VM "${name}" is ${record.state}: it has no resource use`, {
      hint: `start it with "corral start ${name}"`,
    });
  }
  const vmm = processUsage(shim.vmmPid);
  if (vmm === undefined) throw new CorralError("VM_FAILED", `the VMM of "${name}" is gone`);
  const helpers = [shim.shimPid, shim.sidecarPid]
    .flatMap((pid) => (pid === null ? [] : [processUsage(pid)]))
    .filter((u): u is NonNullable<typeof u> => u !== undefined);
  const driver = driverOf(rt, record);
  let disks: DiskCounters[] = [];
  try {
    const machine = driver.open(machineContext(record, paths), inertHost(rt));
    disks = (await machine.counters?.())?.disks ?? [];
  } catch {
    // counters are best effort: a VMM busy or gone answers nothing
  }
  let guestMemory: VmStats["guestMemory"];
  let network: VmStats["network"] = [];
  if (record.state === "ready") {
    const agent = agentOver(driver.channelFor(paths.vsockSocket));
    const [meminfo, netdev] = await Promise.all([
      agent.readFile("/proc/meminfo", { maxBytes: 64 * 1024 }).catch(() => undefined),
      agent.readFile("/proc/net/dev", { maxBytes: 64 * 1024 }).catch(() => undefined),
    ]);
    guestMemory = meminfo === undefined ? undefined : parseMeminfo(meminfo.toString("latin1"));
    network = netdev === undefined ? [] : parseNetDev(netdev.toString("latin1"));
  }
  return {
    name,
    state: record.state,
    vmm: { pid: shim.vmmPid, ...vmm },
    overhead: {
      rssBytes: helpers.reduce((sum, u) => sum + u.rssBytes, 0),
      cpuMs: helpers.reduce((sum, u) => sum + u.cpuMs, 0),
    },
    ...(guestMemory === undefined ? {} : { guestMemory }),
    disks,
    network,
    at: new Date().toISOString(),
  };
}
