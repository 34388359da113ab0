import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { chmod, copyFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { retryUntil, waitForPath } from "../../base/wait.js";
import { CorralError, isCorralError } from "../../errors.js";
import { requireTool } from "../../host/tools.js";
import type { VmSpec } from "../../spec/schema.js";
import {
  type BlockStats,
  type Driver,
  type DriverCapabilities,
  type LaunchPlan,
  unsupported,
  type VmContext,
} from "../driver.js";
import {
  qemuArgs,
  VSOCK_CHARDEV_ID,
  VSOCK_DEVICE_ID,
  VSOCK_ROOT_PORT,
  vhostVsockArgs,
  virtiofsSocket,
} from "./args.js";
import { QmpClient } from "./qmp.js";
import { findVhostDeviceVsock } from "./vhost-device-vsock.js";

const QMP_CONNECT_TIMEOUT_MS = 15_000;
/** device_del completes in ~90 ms under TCG with ACPI hotplug (docs/research/snapshot-spike.md). */
const UNPLUG_TIMEOUT_MS = 5_000;
const PLUG_TIMEOUT_MS = 10_000;
const DRIVER_OK_TIMEOUT_MS = 10_000;
/** virtio-vsock's queues: 0 receive, 1 transmit, 2 event. */
const VSOCK_RX_QUEUE = 0;
const VSOCK_EVENT_QUEUE = 2;
const SAVE_TIMEOUT_MS = 300_000;
const run = promisify(execFile);
/** Debian's ovmf package: 4 MiB flash images (code read-only, variables per VM). */
/** qemu-system-common's virtiofsd (the C one of QEMU 7.2). */
export const VIRTIOFSD = "/usr/lib/qemu/virtiofsd";
export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
export const OVMF_VARS_TEMPLATE = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/**
 * Waits until the guest's driver has set up a hot-plugged virtio-vsock device: DRIVER_OK,
 * then buffers posted on its receive and event queues. Linux's virtio_vsock sets DRIVER_OK
 * before it fills those queues, and a hybrid-vsock CONNECT that reaches the guest before
 * they are filled was seen to wedge vhost-device-vsock 0.3.0 (about one restore in three
 * without this wait; the boot path waits for the agent's READY notice instead). Both queries
 * are marked unstable (x-): without them, a short pause has to do.
 */
async function waitForVsockDriver(qmp: QmpClient, path: string): Promise<void> {
  const deadline = Date.now() + DRIVER_OK_TIMEOUT_MS;
  const driverOk = async (): Promise<boolean> => {
    const r = await qmp.execute<{ status?: { statuses?: string[] } }>("x-query-virtio-status", {
      path,
    });
    return (r.status?.statuses ?? []).some((s) => s.includes("DRIVER_OK"));
  };
  const buffersPosted = async (): Promise<boolean> => {
    for (const queue of [VSOCK_RX_QUEUE, VSOCK_EVENT_QUEUE]) {
      const element = await qmp.execute<{ avail?: { idx?: number } }>(
        "x-query-virtio-queue-element",
        { path, queue },
      );
      if ((element.avail?.idx ?? 0) === 0) return false;
    }
    return true;
  };
  // Without the unstable commands (a QEMU that dropped them), a short pause has to do.
  const pause = () => sleep(200);
  let sinceOk: number | undefined;
  for (;;) {
    try {
      if (sinceOk === undefined && (await driverOk())) sinceOk = Date.now();
    } catch (err) {
      if (isCorralError(err, "QMP")) return pause();
      throw err;
    }
    if (sinceOk !== undefined) {
      try {
        if (await buffersPosted()) return;
      } catch (err) {
        if (!isCorralError(err, "QMP")) throw err;
        // A ring QEMU cannot read yet fails the query: retry a while, then pause instead.
        if (Date.now() - sinceOk > 1_000) return pause();
      }
    }
    if (Date.now() > deadline) {
      throw new CorralError("TIMEOUT", "the guest did not set up the new vsock device within 10 s");
    }
    await sleep(5);
  }
}

export class QemuDriver implements Driver {
  private versionLine: { key: string; line: Promise<string> } | undefined;
  readonly capabilities: DriverCapabilities = {
    backend: "qemu",
    machines: ["q35", "microvm"],
    gracefulStop: "acpi-power-button",
    guestChannel: "hybrid-vsock",
    pause: true,
    snapshots: true,
    balloon: true,
    sharedFolders: ["9p"],
  };

  validate(spec: VmSpec): void {
    if (spec.mounts.some((m) => m.type === "virtiofs") && process.getuid?.() !== 0) {
      throw new CorralError("UNSUPPORTED", "mounts: virtiofs shares need root on this host", {
        hint: "virtiofsd's sandbox (namespaces) needs root; share with 9p instead (the default)",
      });
    }
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
    const virtiofs = vm.spec.mounts.flatMap((m, i) => (m.type === "virtiofs" ? [{ m, i }] : []));
    const virtiofsd = virtiofs.length > 0 ? requireTool(VIRTIOFSD) : undefined;
    return {
      sidecar: { argv: vhostVsockArgs(sidecar, vm), readyPath: vm.paths.vhostUserSocket },
      helpers: virtiofs.map(({ m, i }) => ({
        argv: [
          virtiofsd!,
          `--socket-path=${virtiofsSocket(vm, i)}`,
          "-o",
          `source=${m.source}`,
          "-o",
          "cache=auto",
        ],
        readyPath: virtiofsSocket(vm, i),
        // This virtiofsd has no read-only mode: the shim gives it a read-only bind mount.
        ...(m.readOnly ? { readOnlyDir: m.source } : {}),
      })),
      vmm: {
        argv: qemuArgs(qemu, vm, {
          ...(vm.spec.firmware === "uefi" ? { ovmfCode: requireTool(OVMF_CODE) } : {}),
        }),
      },
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
      // A restore waits in "inmigrate" until its state arrives (finishIncoming).
      if (!status.running && !(vm.incomingFd !== undefined && status.status === "inmigrate")) {
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

  async unplugGuestChannel(vm: VmContext): Promise<void> {
    if (vm.spec.machine === "microvm") throw unsupported("qemu", "snapshots on microvm");
    await this.withQmp(vm, async (qmp) => {
      // Two DEVICE_DELETED events come (the virtio backend, then the device): wait for ours.
      const deleted = qmp.waitForEvent("DEVICE_DELETED", {
        timeoutMs: UNPLUG_TIMEOUT_MS,
        filter: (e) => (e.data as { device?: string } | undefined)?.device === VSOCK_DEVICE_ID,
      });
      deleted.catch(() => {});
      await qmp.execute("device_del", { id: VSOCK_DEVICE_ID });
      await deleted;
    });
  }

  async plugGuestChannel(vm: VmContext): Promise<void> {
    await this.withQmp(vm, async (qmp) => {
      await qmp.execute("chardev-remove", { id: VSOCK_CHARDEV_ID }).catch(() => {});
      await qmp.execute("chardev-add", {
        id: VSOCK_CHARDEV_ID,
        backend: {
          type: "socket",
          data: { addr: { type: "unix", data: { path: vm.paths.vhostUserSocket } }, server: false },
        },
      });
      // Seen once: device_add against a stale sidecar wedged QEMU's main loop. The sidecar
      // is always fresh here; the timeout turns any such hang into an error, not a hang.
      await qmp.execute(
        "device_add",
        {
          driver: "vhost-user-vsock-pci",
          id: VSOCK_DEVICE_ID,
          chardev: VSOCK_CHARDEV_ID,
          bus: VSOCK_ROOT_PORT,
        },
        { timeoutMs: PLUG_TIMEOUT_MS },
      );
      await waitForVsockDriver(qmp, `/machine/peripheral/${VSOCK_DEVICE_ID}/virtio-backend`);
    });
  }

  async saveState(vm: VmContext, socketPath: string): Promise<void> {
    await this.withQmp(vm, async (qmp) => {
      // The default 128 MiB/s cap made saves ~7x slower (DESIGN.md).
      await qmp.execute("migrate-set-parameters", { "max-bandwidth": 64 * 1024 ** 3 });
      await qmp.execute("migrate", { uri: `unix:${socketPath}` });
      const deadline = Date.now() + SAVE_TIMEOUT_MS;
      for (;;) {
        const info = await qmp.execute<{ status?: string; "error-desc"?: string }>("query-migrate");
        if (info.status === "completed") return;
        if (info.status === "failed" || info.status === "cancelled") {
          throw new CorralError(
            "SNAPSHOT",
            `QEMU could not save the VM: ${info["error-desc"] ?? info.status}`,
          );
        }
        if (Date.now() > deadline) {
          await qmp.execute("migrate_cancel").catch(() => {});
          throw new CorralError("TIMEOUT", "saving the VM state took longer than 5 minutes");
        }
        await sleep(10);
      }
    });
  }

  async awaitIncoming(vm: VmContext, signal?: AbortSignal): Promise<void> {
    await this.withQmp(vm, async (qmp) => {
      const deadline = Date.now() + SAVE_TIMEOUT_MS;
      for (;;) {
        signal?.throwIfAborted();
        const status = await qmp.execute<{ status: string; running: boolean }>("query-status");
        if (status.status !== "inmigrate") return;
        if (Date.now() > deadline) {
          throw new CorralError("TIMEOUT", "loading the snapshot took longer than 5 minutes");
        }
        await sleep(5);
      }
    });
  }

  async createFirmwareStore(path: string): Promise<void> {
    requireTool(OVMF_CODE);
    await copyFile(OVMF_VARS_TEMPLATE, path);
    await chmod(path, 0o600);
  }

  /**
   * Asked again only when the binary changed (a restore checks it on every call, and a spawn
   * of QEMU costs ~25 ms; a long-lived daemon must still notice an upgrade).
   */
  version(): Promise<string> {
    const qemu = requireTool("qemu-system-x86_64");
    const st = statSync(qemu);
    const key = `${qemu}:${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.versionLine?.key !== key) {
      const line = run(qemu, ["--version"], { timeout: 10_000 }).then(
        ({ stdout }) => stdout.split("\n")[0]?.trim() ?? "unknown",
      );
      line.catch(() => {
        if (this.versionLine?.line === line) this.versionLine = undefined;
      });
      this.versionLine = { key, line };
    }
    return this.versionLine.line;
  }

  async setMemoryTarget(vm: VmContext, bytes: number): Promise<void> {
    await this.withQmp(vm, (qmp) => qmp.execute("balloon", { value: bytes }));
  }

  async memoryTarget(vm: VmContext): Promise<number> {
    const info = await this.withQmp(vm, (qmp) => qmp.execute<{ actual: number }>("query-balloon"));
    return info.actual;
  }

  /** One QMP command on a connection of its own (CLI processes are short-lived). */
  private command<T = unknown>(vm: VmContext, command: string): Promise<T> {
    return this.withQmp(vm, (qmp) => qmp.execute<T>(command));
  }

  private async withQmp<T>(vm: VmContext, use: (qmp: QmpClient) => Promise<T>): Promise<T> {
    const qmp = await QmpClient.connect(vm.paths.qmpSocket, { timeoutMs: 5_000 });
    try {
      return await use(qmp);
    } finally {
      await qmp.close();
    }
  }
}
