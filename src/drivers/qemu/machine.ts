/** One QEMU VM start: its argv and sidecars, QMP after launch, pause, balloon, counters. */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { hashDescriptor, type StreamDigest } from "../../base/hash.js";
import { CorralError } from "../../errors.js";
import { HybridVsockChannel } from "../../guest/hybrid-vsock-channel.js";
import { requireTool } from "../../host/tools.js";
import type {
  BootMode,
  DeviceCounters,
  LaunchPlan,
  Machine,
  MachineHost,
  VmContext,
} from "../driver.js";
import { chooseAccelerator } from "./accel.js";
import { qemuArgs, vhostVsockArgs } from "./args.js";
import { connectWhenListening, withQmp } from "./control.js";
import { type BlockStatsEntry, diskCounters } from "./counters.js";
import { qemuFiles, virtiofsSocket } from "./files.js";
import { loadSnapshot, QemuSnapshotter } from "./snapshot.js";
import { findVhostDeviceVsock } from "./vhost-device-vsock.js";

/** Debian's ovmf package: 4 MiB flash images (code read-only, variables per VM). */
export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
export const OVMF_VARS_TEMPLATE = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/** qemu-system-common's virtiofsd (the C one of QEMU 7.2). */
export const VIRTIOFSD = "/usr/lib/qemu/virtiofsd";
/** The descriptor number the VMM gets LaunchPlan.vmmFd as (the first after stdio). */
const VMM_FD = 3;

export class QemuMachine implements Machine {
  readonly channel: HybridVsockChannel;
  readonly snapshots: QemuSnapshotter;
  readonly balloon = {
    setTarget: (bytes: number) =>
      withQmp(this.files.qmpSocket, (qmp) => qmp.execute("balloon", { value: bytes })).then(
        () => {},
      ),
    actual: () =>
      withQmp(this.files.qmpSocket, (qmp) => qmp.execute<{ actual: number }>("query-balloon")).then(
        (info) => info.actual,
      ),
  };
  private readonly files: ReturnType<typeof qemuFiles>;
  /** A restore's state file: QEMU reads it through its copy, this one is hashed. */
  private memoryFd: number | undefined;
  private readonly hashing = new AbortController();

  constructor(
    private readonly vm: VmContext,
    private readonly host: MachineHost,
  ) {
    this.files = qemuFiles(vm.runDir);
    this.channel = new HybridVsockChannel(vm.channelSocket);
    this.snapshots = new QemuSnapshotter(vm, this.plugs());
  }

  async plan(mode: BootMode): Promise<LaunchPlan> {
    const qemu = requireTool("qemu-system-x86_64");
    const sidecar = findVhostDeviceVsock();
    if (sidecar === undefined) {
      throw new CorralError("TOOL_MISSING", "vhost-device-vsock is not installed", {
        hint: 'run "corral setup" (it fetches vhost-device-vsock from the Debian archive)',
      });
    }
    const accelerator = chooseAccelerator(this.vm.spec.accel);
    if (this.vm.spec.accel === "auto" && accelerator.accel === "tcg") {
      this.host.notice(`using TCG software emulation: ${accelerator.reason}`);
    }
    const virtiofs = this.vm.spec.mounts.flatMap((m, i) =>
      m.type === "virtiofs" ? [{ m, i }] : [],
    );
    const virtiofsd = virtiofs.length > 0 ? requireTool(VIRTIOFSD) : undefined;
    const ovmfCode = this.vm.spec.firmware === "uefi" ? requireTool(OVMF_CODE) : undefined;
    if (mode.kind === "restore") this.memoryFd = openMemory(mode);
    return {
      accelerator,
      sidecar: { argv: vhostVsockArgs(sidecar, this.vm), readyPath: this.files.vhostUserSocket },
      helpers: virtiofs.map(({ m, i }) => ({
        argv: [
          virtiofsd!,
          `--socket-path=${virtiofsSocket(this.vm.runDir, i)}`,
          "-o",
          `source=${m.source}`,
          "-o",
          "cache=auto",
        ],
        readyPath: virtiofsSocket(this.vm.runDir, i),
        // This virtiofsd has no read-only mode: the shim gives it a read-only bind mount.
        ...(m.readOnly ? { readOnlyDir: m.source } : {}),
      })),
      vmm: {
        argv: qemuArgs(qemu, this.vm, {
          accel: accelerator.accel,
          ...(ovmfCode === undefined ? {} : { ovmfCode }),
          ...(this.memoryFd === undefined ? {} : { incomingFd: VMM_FD }),
        }),
      },
      ...(this.memoryFd === undefined ? {} : { vmmFd: this.memoryFd }),
    };
  }

  async boot(mode: BootMode, signal?: AbortSignal): Promise<void> {
    // Hashing starts with the VMM's load, on the same open file (positional reads leave the
    // offset QEMU reads from alone), so both see the same bytes.
    let memoryHash: Promise<StreamDigest> | undefined;
    if (this.memoryFd !== undefined) {
      memoryHash = hashDescriptor(this.memoryFd, this.hashing.signal);
      this.memoryFd = undefined; // hashDescriptor closes it
      memoryHash.catch(() => {});
    }
    const qmp = await connectWhenListening(this.files.qmpSocket, signal);
    try {
      const status = await qmp.execute<{ status: string; running: boolean }>("query-status");
      // A restore waits in "inmigrate" until its state arrives.
      if (!status.running && !(mode.kind === "restore" && status.status === "inmigrate")) {
        throw new CorralError(
          "VM_FAILED",
          `QEMU is not running the guest (status ${status.status})`,
        );
      }
    } finally {
      await qmp.close();
    }
    if (mode.kind === "restore") {
      const memory = mode.files.find((f) => f.role === "memory");
      if (memory === undefined || memoryHash === undefined) {
        throw new CorralError("SNAPSHOT_DAMAGED", "the snapshot has no memory file");
      }
      await loadSnapshot(
        mode.dir,
        memory,
        memoryHash,
        { ...this.plugs(), probe: this.host.probe },
        signal,
      );
    }
  }

  async requestShutdown(): Promise<void> {
    await withQmp(this.files.qmpSocket, (qmp) => qmp.execute("system_powerdown"));
  }

  async pause(): Promise<void> {
    await withQmp(this.files.qmpSocket, (qmp) => qmp.execute("stop"));
  }

  async resume(): Promise<void> {
    await withQmp(this.files.qmpSocket, (qmp) => qmp.execute("cont"));
  }

  async counters(): Promise<DeviceCounters> {
    const entries = await withQmp(this.files.qmpSocket, (qmp) =>
      qmp.execute<BlockStatsEntry[]>("query-blockstats"),
    );
    return { disks: diskCounters(Array.isArray(entries) ? entries : []) };
  }

  dispose(): void {
    this.hashing.abort();
    if (this.memoryFd !== undefined) closeSync(this.memoryFd);
    this.memoryFd = undefined;
  }

  private plugs() {
    return {
      qmpSocket: this.files.qmpSocket,
      vhostUserSocket: this.files.vhostUserSocket,
      migrationSocket: this.files.migrationSocket,
      replaceSidecar: () => this.host.replaceSidecar(this.files.vhostUserSocket),
      notice: (message: string) => this.host.notice(message),
      probe: this.host.probe,
    };
  }
}

function openMemory(mode: Extract<BootMode, { kind: "restore" }>): number {
  const memory = mode.files.find((f) => f.role === "memory");
  const name = mode.dir.split("/").pop() ?? mode.dir;
  try {
    return openSync(join(mode.dir, memory?.file ?? "memory.bin"), "r");
  } catch (err) {
    throw new CorralError(
      "SNAPSHOT_DAMAGED",
      `snapshot "${name}" is damaged: its memory file cannot be opened: ${String(err)}`,
      {
        hint: `remove it with "corral snapshot rm ${name}" and take a new one`,
      },
    );
  }
}
