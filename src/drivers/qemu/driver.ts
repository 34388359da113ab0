import { retryUntil, waitForPath } from "../../core/wait.js";
import { CorralError, isCorralError } from "../../errors.js";
import { requireTool } from "../../host/tools.js";
import { findVhostDeviceVsock } from "../../host/vhost-device-vsock.js";
import { QmpClient } from "../../protocols/qmp/client.js";
import type { VmSpec } from "../../spec/schema.js";
import type { BlockStats, Driver, DriverCapabilities, LaunchPlan, VmContext } from "../driver.js";
import { qemuArgs, vhostVsockArgs } from "./args.js";

const QMP_CONNECT_TIMEOUT_MS = 15_000;

export class QemuDriver implements Driver {
  readonly capabilities: DriverCapabilities = {
    backend: "qemu",
    machines: ["q35", "microvm"],
    gracefulStop: "acpi-power-button",
    guestChannel: "hybrid-vsock",
    pause: true,
    snapshots: false,
    balloon: false,
    sharedFolders: [],
  };

  validate(spec: VmSpec): void {
    if (spec.backend !== "qemu") {
      throw new CorralError(
        "INVALID_SPEC",
        `backend: the QEMU driver cannot run "${spec.backend}"`,
      );
    }
  }

  async plan(vm: VmContext): Promise<LaunchPlan> {
    const qemu = requireTool("qemu-system-x86_64");
    const sidecar = findVhostDeviceVsock();
    if (sidecar === undefined) {
      throw new CorralError("TOOL_MISSING", "vhost-device-vsock is not installed", {
        hint: 'run "corral setup" (it fetches vhost-device-vsock from the Debian archive)',
      });
    }
    return {
      sidecar: { argv: vhostVsockArgs(sidecar, vm), readyPath: vm.paths.vhostUserSocket },
      vmm: { argv: qemuArgs(qemu, vm) },
    };
  }

  async afterLaunch(vm: VmContext, signal?: AbortSignal): Promise<void> {
    await waitForPath(vm.paths.qmpSocket, QMP_CONNECT_TIMEOUT_MS, signal);
    // QEMU binds the socket a moment before it listens: ECONNREFUSED in between is normal.
    const qmp = await retryUntil(
      () =>
        QmpClient.connect(vm.paths.qmpSocket, { timeoutMs: QMP_CONNECT_TIMEOUT_MS }).catch(
          (err) => {
            if (isCorralError(err, "QMP") && err.details?.errno === "ECONNREFUSED")
              return undefined;
            throw err;
          },
        ),
      { timeoutMs: QMP_CONNECT_TIMEOUT_MS, intervalMs: 5, signal },
    );
    try {
      const status = await qmp.execute<{ status: string; running: boolean }>("query-status");
      if (!status.running) {
        throw new CorralError(
          "VM_FAILED",
          `QEMU is not running the guest (status ${status.status})`,
        );
      }
    } finally {
      await qmp.close();
    }
  }

  async requestShutdown(vm: VmContext): Promise<void> {
    await this.command(vm, "system_powerdown");
  }

  async pause(vm: VmContext): Promise<void> {
    await this.command(vm, "stop");
  }

  async resume(vm: VmContext): Promise<void> {
    await this.command(vm, "cont");
  }

  async blockStats(vm: VmContext): Promise<BlockStats[]> {
    const entries = await this.command<BlockStats[]>(vm, "query-blockstats");
    return Array.isArray(entries) ? entries : [];
  }

  /** One QMP command on a connection of its own (CLI processes are short-lived). */
  private async command<T = unknown>(vm: VmContext, command: string): Promise<T> {
    const qmp = await QmpClient.connect(vm.paths.qmpSocket, { timeoutMs: 5_000 });
    try {
      return await qmp.execute<T>(command);
    } finally {
      await qmp.close();
    }
  }
}
