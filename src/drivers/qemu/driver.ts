/**
 * The QEMU backend: q35 (or microvm) with KVM, HVF or TCG, the guest channel through the
 * vhost-device-vsock sidecar, qcow2 overlays, OVMF for UEFI, snapshots through QEMU's
 * migration stream. Its feature record is what the lifecycle, doctor and docs read.
 */
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { chmod, copyFile } from "node:fs/promises";
import { promisify } from "node:util";
import type { ProgressListener } from "../../base/progress.js";
import type { GuestChannel } from "../../guest/channel.js";
import { HybridVsockChannel } from "../../guest/hybrid-vsock-channel.js";
import { requireTool } from "../../host/tools.js";
import type { VmSpec } from "../../spec/schema.js";
import type {
  Driver,
  DriverFeatures,
  HostCheck,
  HostComponent,
  Machine,
  MachineHost,
  SpecProblem,
  VmContext,
} from "../driver.js";
import { qemuDisks } from "./disks.js";
import { OVMF_CODE, OVMF_VARS_TEMPLATE, QemuMachine } from "./machine.js";
import {
  ensureVhostDeviceVsock,
  findVhostDeviceVsock,
  VHOST_DEVICE_VSOCK,
} from "./vhost-device-vsock.js";

const run = promisify(execFile);

export const QEMU_FEATURES: DriverFeatures = {
  // Not macOS yet: the guest channel's vhost-user sidecar needs Linux (HVF is chosen by
  // accel.ts, ready for a macOS guest channel).
  hosts: ["linux"],
  machines: ["q35", "microvm"],
  accelerators: ["kvm", "hvf", "tcg"],
  diskFormats: ["qcow2", "raw"],
  networks: ["none", "nat", "tap", "switch"],
  sharedFolders: ["9p", "virtiofs"],
  firmware: ["direct", "uefi"],
  cdrom: true,
  cloudImages: true,
  gracefulStop: "acpi-power-button",
  guestChannel: "hybrid-vsock",
  pause: true,
  balloon: true,
  snapshots: { guestChannelSurvives: false },
  hotplug: [],
  counters: true,
};

export class QemuDriver implements Driver {
  readonly name = "qemu" as const;
  readonly features = QEMU_FEATURES;
  readonly disks = qemuDisks;
  private versionLine: { key: string; line: Promise<string> } | undefined;

  validate(spec: VmSpec): SpecProblem[] {
    if (spec.mounts.some((m) => m.type === "virtiofs") && process.getuid?.() !== 0) {
      return [
        {
          field: "mounts",
          message: "can share with virtiofs only as root on this host",
          hint: "virtiofsd's sandbox (namespaces) needs root; share with 9p instead (the default)",
        },
      ];
    }
    return [];
  }

  async prepareHost(options: {
    onProgress?: ProgressListener;
    refresh?: boolean;
  }): Promise<HostComponent[]> {
    const sidecar = await ensureVhostDeviceVsock(options);
    return [{ name: VHOST_DEVICE_VSOCK, ...sidecar }];
  }

  checkHost(): HostCheck[] {
    const sidecar = findVhostDeviceVsock();
    return [
      {
        name: VHOST_DEVICE_VSOCK,
        ok: sidecar !== undefined,
        detail: sidecar ?? "missing (the host end of the guest channel for QEMU)",
        ...(sidecar === undefined
          ? { fix: 'run "corral setup" (fetched from the Debian archive, SHA-256 verified)' }
          : {}),
      },
    ];
  }

  async createFirmwareStore(dest: string): Promise<void> {
    requireTool(OVMF_CODE);
    await copyFile(OVMF_VARS_TEMPLATE, dest);
    await chmod(dest, 0o600);
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

  channelFor(channelSocket: string): GuestChannel {
    return new HybridVsockChannel(channelSocket);
  }

  open(vm: VmContext, host: MachineHost): Machine {
    return new QemuMachine(vm, host);
  }
}
