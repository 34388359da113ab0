/** `corral daemon status|stop`: the library calls behind them. */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, signalProcess } from "../base/process.js";
import { daemonPaths } from "../paths/layout.js";
import { DaemonClient, type DaemonHealth } from "./client.js";
import type { VmServicesStatus } from "./vm-services.js";

export interface DaemonStatus {
  running: boolean;
  health?: DaemonHealth;
  vms: VmServicesStatus[];
  socket: string;
  log: string;
}

export async function daemonStatus(): Promise<DaemonStatus> {
  const paths = daemonPaths();
  const client = await DaemonClient.ifRunning();
  if (client === undefined)
    return { running: false, vms: [], socket: paths.socket, log: paths.log };
  try {
    const [health, vms] = await Promise.all([
      client.health(),
      client.request<VmServicesStatus[]>("GET", "/v1/vms"),
    ]);
    return { running: true, health, vms, socket: paths.socket, log: paths.log };
  } finally {
    await client.close();
  }
}

/** Asks the daemon to exit (its VMs keep running; their forwards and proxies stop). */
export async function stopDaemon(timeoutMs = 10_000): Promise<boolean> {
  const paths = daemonPaths();
  let state: { pid?: number; startTime?: string } = {};
  try {
    state = JSON.parse(readFileSync(paths.state, "utf8")) as typeof state;
  } catch {
    state = {};
  }
  const client = await DaemonClient.ifRunning();
  if (client !== undefined) {
    await client.request("POST", "/v1/shutdown").catch(() => {});
    await client.close();
  }
  const pid = state.pid;
  if (pid === undefined) return client !== undefined;
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid, state.startTime)) {
    if (Date.now() > deadline) {
      signalProcess(pid, "SIGKILL");
      break;
    }
    if (client === undefined) signalProcess(pid, "SIGTERM");
    await sleep(20);
  }
  return true;
}
