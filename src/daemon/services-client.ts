/** HostServices served by the per-user daemon, started on demand (see vm/services.ts). */
import type { HostServices } from "../vm/services.js";
import { DaemonClient } from "./client.js";

export const daemonServices: HostServices = {
  async attach(name) {
    const daemon = await DaemonClient.ensure();
    try {
      await daemon.request("PUT", `/v1/vms/${name}/services`);
    } finally {
      await daemon.close();
    }
  },
  async detach(name) {
    const daemon = await DaemonClient.ifRunning();
    if (daemon === undefined) return;
    try {
      await daemon.request("DELETE", `/v1/vms/${name}/services`).catch(() => {});
    } finally {
      await daemon.close();
    }
  },
};
