/**
 * The one Driver interface every backend implements (QEMU now; Firecracker, Cloud Hypervisor
 * and Apple VZ later). A driver only knows its VMM: how to launch it, how to configure it
 * once launched, how to ask it to stop. Readiness, the guest agent, supervision (the shim),
 * state and paths live above it in core/, so every backend gets them for free.
 *
 * Shaped after Lima's pkg/driver (small interface + declared features) and the lifecycle
 * of Firecracker/Cloud Hypervisor (spawn the VMM with an API socket, configure, boot):
 * - QEMU: everything is on the command line; `afterLaunch` checks QMP.
 * - Firecracker / Cloud Hypervisor: `plan` spawns the VMM with --api-sock, `afterLaunch`
 *   PUTs boot-source/drives/vsock and starts the instance; vsock is hybrid natively.
 * - VZ: the Swift helper is the VMM process; it bridges virtio-socket to the same UDS.
 */

import { CorralError } from "../errors.js";
import type { ImageInfo } from "../images/image-info.js";
import type { InstancePaths } from "../paths/layout.js";
import type { VmSpec } from "../spec/schema.js";

export type Backend = "qemu" | "firecracker" | "cloud-hypervisor" | "vz";

export interface DriverCapabilities {
  backend: Backend;
  /** Machine types the driver can build. */
  machines: readonly string[];
  /** How a graceful stop reaches the guest. */
  gracefulStop: "acpi-power-button" | "ctrl-alt-del" | "agent";
  /** The host<->guest channel: always the hybrid-vsock unix socket protocol. */
  guestChannel: "hybrid-vsock";
  pause: boolean;
  snapshots: boolean;
  balloon: boolean;
  sharedFolders: readonly ("9p" | "virtiofs")[];
}

/** Everything a driver needs to know about one VM. */
export interface VmContext {
  id: string;
  spec: VmSpec;
  paths: InstancePaths;
  image: ImageInfo;
  /** The accelerator chosen for this start (never "auto"). */
  accel: "kvm" | "hvf" | "tcg";
  guestCid: number;
  /** The root filesystem disk (an OCI image's overlay); absent: the initramfs is the root. */
  rootDisk?: { path: string; format: "qcow2" | "raw"; grow?: boolean };
  /** The cloud-init NoCloud seed (an ISO9660 image), attached read-only after the root disk. */
  seed?: string;
  /** The VM's UEFI variable store (firmware: "uefi"). */
  efiVars?: string;
  /** The guest's address: "dhcp" or "A.B.C.D/LEN" (the user's, or allocated on a switch). */
  guestIp?: string;
  /** The NIC's MAC (used when spec.network is not "none"). */
  mac: string;
  /** Restoring a snapshot: the VMM reads its saved state from this inherited descriptor. */
  incomingFd?: number;
  /** Data disks, in order (the guest sees them after the root disk). */
  disks: readonly { path: string; format: "qcow2" | "raw"; readOnly: boolean }[];
}

/** A process the shim runs for this VM, as an argv array (never a shell string). */
export interface ProcessPlan {
  argv: string[];
}

export interface LaunchPlan {
  vmm: ProcessPlan;
  /** More helpers the VMM needs (virtiofsd per share), started before it, awaited by path. */
  helpers?: (ProcessPlan & { readyPath: string; readOnlyDir?: string })[];
  /** Runs before the VMM (e.g. QEMU's vhost-device-vsock); the shim waits for `readyPath`. */
  sidecar?: ProcessPlan & { readyPath: string };
}

export interface Driver {
  readonly capabilities: DriverCapabilities;
  /** Rejects specs this backend cannot run, with a typed UNSUPPORTED/INVALID_SPEC error. */
  validate(spec: VmSpec): void;
  /** The processes to launch; pure apart from resolving tool paths. */
  plan(vm: VmContext): Promise<LaunchPlan>;
  /** Called once the VMM process exists: connect its control API, configure, boot. */
  afterLaunch(vm: VmContext, signal?: AbortSignal): Promise<void>;
  /** Asks the guest to shut down cleanly; resolves once the request was delivered. */
  requestShutdown(vm: VmContext): Promise<void>;
  /** Freezes the vCPUs (capabilities.pause); guest memory and devices stay as they are. */
  pause?(vm: VmContext): Promise<void>;
  resume?(vm: VmContext): Promise<void>;
  /** Per-disk I/O counters, in the shape of QMP's query-blockstats entries. */
  blockStats?(vm: VmContext): Promise<BlockStats[]>;

  // Snapshots (capabilities.snapshots). The guest channel cannot be migrated on every
  // backend (QEMU's vhost-user-vsock), so it is unplugged around a save and plugged in fresh.
  /** Removes the guest channel device; resolves once the guest let go of it. */
  unplugGuestChannel?(vm: VmContext): Promise<void>;
  /** Plugs a guest channel device served by the (new) sidecar. */
  plugGuestChannel?(vm: VmContext): Promise<void>;
  /** Streams the paused VM's device and memory state to a unix socket the caller listens on. */
  saveState?(vm: VmContext, socketPath: string): Promise<void>;
  /** Restoring: resolves once the state read from `vm.incomingFd` is loaded (vCPUs still paused). */
  awaitIncoming?(vm: VmContext, signal?: AbortSignal): Promise<void>;
  /** Creates a VM's UEFI variable store at `path` (firmware: "uefi"), from the template. */
  createFirmwareStore?(path: string): Promise<void>;
  /** The VMM's version, recorded in snapshots (a different version may not load them). */
  version?(): Promise<string>;
  /** Memory balloon (capabilities.balloon): the guest's target size, and what it reached. */
  setMemoryTarget?(vm: VmContext, bytes: number): Promise<void>;
  memoryTarget?(vm: VmContext): Promise<number>;
}

export interface BlockStats {
  device?: string;
  qdev?: string;
  node_name?: string;
  stats?: { rd_bytes?: number; wr_bytes?: number; rd_operations?: number; wr_operations?: number };
}

export function unsupported(backend: Backend, operation: string): CorralError {
  return new CorralError("UNSUPPORTED", `${backend} does not support ${operation}`, {
    hint: "see docs/capabilities.md for what each backend supports",
  });
}
