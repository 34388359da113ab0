/**
 * The contract every backend implements (QEMU today; Firecracker, Cloud Hypervisor and Apple
 * VZ next). Two objects, after Lima's Driver/ConfiguredDriver and Apple containerization's
 * VirtualMachineManager/VirtualMachineInstance:
 *
 * - a Driver, one per backend: its name, a feature record that the lifecycle READS (spec
 *   validation refuses what the backend cannot do before any process starts; `corral doctor`
 *   and docs/capabilities.md are generated from it), its disk formats, its version;
 * - a Machine, one per VM start: the processes to launch (for a fresh boot, or to load a
 *   snapshot: Firecracker's build_microvm_for_boot / build_microvm_from_snapshot), what to do
 *   once they run, how to ask the guest to stop, the guest channel, and optional parts
 *   (pause, snapshots, balloon, counters) that exist only when the features say so.
 *
 * The lifecycle (src/vm) decides *when*: locks, states, readiness, supervision by the shim,
 * metadata, undo on failure. The driver decides *how*, and owns everything it names: its
 * sockets, its disk format, its accelerator, its snapshot files and its workarounds.
 */
import type { ProgressListener } from "../base/progress.js";
import type { GuestChannel } from "../guest/channel.js";
import type { Backend, VmSpec } from "../spec/schema.js";

export type { Backend };

export type DiskFormat = "raw" | "qcow2";
export type NetworkKind = "none" | "nat" | "tap" | "switch";

/** What a backend can do. Read by validation, doctor, docs and (later) the REST API. */
export interface DriverFeatures {
  /** Host operating systems the backend runs on. */
  hosts: readonly NodeJS.Platform[];
  /** Machine models `spec.machine` may name (empty: the backend has one). */
  machines: readonly string[];
  /** Accelerators `spec.accel` may name besides "auto". */
  accelerators: readonly ("kvm" | "hvf" | "tcg")[];
  /** Disk image formats the VMM attaches (Lima's SupportedImageFormats). */
  diskFormats: readonly DiskFormat[];
  networks: readonly NetworkKind[];
  sharedFolders: readonly ("9p" | "virtiofs")[];
  firmware: readonly ("direct" | "uefi")[];
  cdrom: boolean;
  /** Booting a user's disk image with its own kernel or firmware (`spec.cloudImage`). */
  cloudImages: boolean;
  /** How a graceful stop reaches the guest. */
  gracefulStop: "acpi-power-button" | "ctrl-alt-del" | "agent";
  guestChannel: GuestChannel["kind"];
  pause: boolean;
  balloon: boolean;
  /** Save and restore a running VM; `false` when the backend cannot. */
  snapshots:
    | false
    | {
        /** Whether open guest connections survive a save (false: the channel is replaced). */
        guestChannelSurvives: boolean;
      };
  hotplug: readonly ("disk" | "fs" | "net")[];
  /** Per-device I/O counters for `corral stats`. */
  counters: boolean;
}

/** One reason a spec cannot run on a backend, naming the field. */
export interface SpecProblem {
  field: string;
  message: string;
  hint?: string;
}

/** A disk file the VMM attaches. */
export interface DiskFile {
  path: string;
  format: DiskFormat;
}

/** How a backend makes per-VM disks (qcow2 overlays for QEMU; raw files for Firecracker). */
export interface DiskBackend {
  /** The file name a VM's disk gets in its instance directory ("root" -> root.qcow2). */
  fileName(role: string): string;
  /** The format of a user's disk image, refusing what the backend cannot attach. */
  probe(path: string, field: string): Promise<DiskFormat>;
  /** A VM's own disk over a shared base, O(1) where the format allows (grown to `sizeMiB`). */
  overlay(
    base: string,
    dest: string,
    options?: { sizeMiB?: number; baseFormat?: DiskFormat },
  ): Promise<DiskFile>;
  /** A new empty (sparse) disk. */
  empty(dest: string, sizeMiB: number): Promise<DiskFile>;
}

/** The boot image of a VM: the kernel and initramfs corral built, and their command line. */
export interface BootImage {
  name: string;
  version: string;
  digest: string;
  kernel: string;
  initrd: string;
  cmdline: string;
}

/** Everything a driver needs to know about one VM start. */
export interface VmContext {
  id: string;
  spec: VmSpec;
  /** Persistent, per VM (disks, logs). */
  instanceDir: string;
  /** Private (0700), short (socket paths), removed when the VM stops: the driver's sockets go here. */
  runDir: string;
  /** Where the guest's serial console is written. */
  serialLog: string;
  /** The host end of the guest channel (a unix socket the VMM or its sidecar serves). */
  channelSocket: string;
  /** For `network: switch:NAME`: the stream socket the daemon's switch port dials. */
  switchSocket: string;
  image: BootImage;
  /** The root filesystem disk (an OCI image's or a cloud image's); absent: the initramfs is the root. */
  rootDisk?: DiskFile & { grow?: boolean };
  /** The cloud-init NoCloud seed (an ISO9660 image), attached read-only after the root disk. */
  seed?: string;
  /** The VM's UEFI variable store (firmware: "uefi"). */
  efiVars?: string;
  /** The guest's address: "dhcp" or "A.B.C.D/LEN" (the user's, or allocated on a switch). */
  guestIp?: string;
  /** The NIC's MAC (used when spec.network is not "none"). */
  mac: string;
  /** Data disks, in order (the guest sees them after the root disk). */
  disks: readonly (DiskFile & { readOnly: boolean })[];
}

/** A process the shim runs for this VM, as an argv array (never a shell string). */
export interface ProcessPlan {
  argv: string[];
}

export interface LaunchPlan {
  vmm: ProcessPlan;
  /** The accelerator chosen for this start, and why (recorded, shown by inspect). */
  accelerator?: { accel: "kvm" | "hvf" | "tcg"; reason: string };
  /** More helpers the VMM needs (virtiofsd per share), started before it, awaited by path. */
  helpers?: (ProcessPlan & { readyPath: string; readOnlyDir?: string })[];
  /** Runs before the VMM and is replaceable while it runs (QEMU's vhost-device-vsock). */
  sidecar?: ProcessPlan & { readyPath: string };
  /** An open descriptor handed to the VMM alone, as its fd 3 (a snapshot's state). */
  vmmFd?: number;
}

/** How a Machine starts: a fresh boot, or loading a snapshot's saved state. */
export type BootMode =
  | { kind: "boot" }
  | {
      kind: "restore";
      /** The snapshot directory: the files the driver wrote at save time. */
      dir: string;
      /** The files as recorded at save time; the driver verifies what it loads against them. */
      files: readonly SnapshotFile[];
    };

export interface SnapshotFile {
  file: string;
  role: "memory" | "state" | "config";
  sha256: string;
  size: number;
}

/** What the lifecycle gives a machine while it saves a snapshot. */
export interface SaveContext {
  /** Where the driver writes its state files (a private temporary directory). */
  dir: string;
  /** The VM was paused by the user before the snapshot; it stays paused afterwards. */
  wasPaused: boolean;
  /**
   * Called by the driver once the vCPUs are stopped and the disks flushed: the lifecycle
   * copies the VM's disks then, so they match the saved memory.
   */
  whileFrozen(): Promise<void>;
  signal?: AbortSignal;
}

export interface SaveResult {
  files: SnapshotFile[];
  /** How long the vCPUs stood still for the save. */
  pausedMs: number;
  /**
   * Set when the state was saved but the VM could not be brought back (the lifecycle then
   * kills it and records it failed). A save that fails and loses the VM throws a CorralError
   * with code VM_FAILED and this reason in `details.lost`.
   */
  lost?: string;
}

export interface Snapshotter {
  /** Refusals specific to this backend (beyond the feature record), naming the field. */
  check(vm: VmContext): SpecProblem[];
  /**
   * Saves the running VM: memory and device state into `ctx.dir`, calling `ctx.whileFrozen`
   * in between. Afterwards the VM runs again (or stays paused, when it was).
   */
  save(ctx: SaveContext): Promise<SaveResult>;
}

/** The guest agent, as a machine may probe it (a restored agent sends no readiness notice). */
export interface AgentProbe {
  /** One round trip to the agent that also sets the guest clock; resolves when it answered. */
  setTime(options: { timeoutMs: number }): Promise<void>;
  /** Drops idle connections (a channel that was replaced cuts them). */
  dropIdle(): void;
}

export interface Machine {
  /** The processes to launch (pure apart from resolving tool paths and opening state files). */
  plan(mode: BootMode): Promise<LaunchPlan>;
  /**
   * Called once the shim reported the VMM running: connect its control API, configure, boot.
   * In restore mode: load the state, verify it, run the vCPUs and make the guest agent answer
   * `host.probe` (a restored agent never restarts, so it sends no readiness notice).
   */
  boot(mode: BootMode, signal?: AbortSignal): Promise<void>;
  /** Asks the guest to shut down cleanly; resolves once the request was delivered. */
  requestShutdown(signal?: AbortSignal): Promise<void>;
  /** Releases what the machine holds in this process (descriptors, connections). Idempotent. */
  dispose(): void;
  readonly channel: GuestChannel;
  /** Present when features.pause: freezes the vCPUs; memory and devices stay as they are. */
  pause?(): Promise<void>;
  resume?(): Promise<void>;
  /** Present when features.snapshots. */
  readonly snapshots?: Snapshotter;
  /** Present when features.balloon. */
  readonly balloon?: {
    setTarget(bytes: number): Promise<void>;
    actual(): Promise<number>;
  };
  /** Present when features.counters. */
  counters?(): Promise<DeviceCounters>;
}

/** Per-disk I/O counters, in one shape for every backend. */
export interface DiskCounters {
  device: string;
  readBytes: number;
  writtenBytes: number;
  readOps: number;
  writeOps: number;
}

export interface DeviceCounters {
  disks: DiskCounters[];
}

export interface Driver {
  readonly name: Backend;
  readonly features: DriverFeatures;
  /** Problems specific to this driver and host (beyond the feature record), naming the field. */
  validate(spec: VmSpec): SpecProblem[];
  readonly disks: DiskBackend;
  /** Per-VM files a VM needs from the start (a UEFI variable store), created at `dest`. */
  createFirmwareStore?(dest: string): Promise<void>;
  /** The VMM's version, recorded in snapshots (another version may not load them). */
  version(): Promise<string>;
  /** `corral setup`: fetches what the backend needs beyond host packages; idempotent. */
  prepareHost?(options: {
    onProgress?: ProgressListener;
    refresh?: boolean;
  }): Promise<HostComponent[]>;
  /** `corral doctor`: the backend's own checks (beyond the host tool table). */
  checkHost?(): HostCheck[];
  /**
   * The guest channel of a VM whose channel socket is `channelSocket` (for a running VM that
   * this process did not start: exec, port forwards, the egress proxy).
   */
  channelFor(channelSocket: string): GuestChannel;
  /** Binds the driver to one VM start. Cheap: no I/O until a method is called. */
  open(vm: VmContext, host: MachineHost): Machine;
}

/**
 * What the lifecycle offers a machine (injected, because drivers sit below the lifecycle):
 * supervision of its processes, the guest agent, and a way to tell the user things.
 */
export interface MachineHost {
  /** Replaces the plan's sidecar process while the VMM runs; resolves once `readyPath` exists. */
  replaceSidecar(readyPath: string): Promise<void>;
  probe: AgentProbe;
  notice(message: string): void;
}

/** A piece of a backend that corral fetched for this host (QEMU's vsock sidecar). */
export interface HostComponent {
  name: string;
  version: string;
  path: string;
}

export interface HostCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** How to fix a failed check. */
  fix?: string;
}
