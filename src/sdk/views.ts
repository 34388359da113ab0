/**
 * What the SDK returns: deliberate public shapes, each built from an internal record by
 * sdk/to-view.ts. The persisted records (vm.json, snapshot.json, image.json) and the paths
 * under the state, cache and run directories are not API: they change with the on-disk format
 * and the backends, and a socket path handed out is a promise to keep it there. A view says
 * what a VM, snapshot, image, pool or backend *is*; how corral stores it stays inside.
 */
import type { DriverFeatures } from "../drivers/driver.js";
import type { OciRunConfig } from "../images/oci-store-meta.js";
import type { Backend } from "../spec/schema.js";
import type { VmState } from "../vm/record.js";

/** The image a VM boots. */
export type VmImageView =
  /** corral's own kernel + initramfs (`corral-default`), the build it was created with. */
  | { kind: "builtin"; name: string; version: string; digest: string }
  /** A pulled OCI image as the root filesystem, by the reference it was named with. */
  | { kind: "oci"; reference: string; digest: string }
  /** A cloud image: the user's disk file (never modified: the VM writes to its own overlay). */
  | { kind: "cloud"; path: string; format: "raw" | "qcow2" };

/** A TCP port forward from the host to the guest. */
export interface PortView {
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** A host directory shared with the guest. */
export interface MountView {
  source: string;
  target: string;
  readOnly: boolean;
  type: "9p" | "virtiofs";
}

/** A data disk: a new empty one of a size, or a file the user named. */
export type DiskView =
  | { kind: "new"; sizeMiB: number }
  | { kind: "file"; path: string; readOnly: boolean };

export interface VmView {
  name: string;
  /** 12 hex digits, new for every VM (a VM re-created under the same name gets another). */
  id: string;
  backend: Backend;
  state: VmState;
  /** Why it is in its state: "stopped by user", the failure of a failed VM. */
  reason?: string;
  image: VmImageView;
  cpus: number;
  memoryMiB: number;
  /** "none", "nat", "tap:IFACE" or "switch:NAME". */
  network: string;
  /** The guest's address, when corral gave it one or the spec sets it. */
  ip?: string;
  ports: PortView[];
  /** Egress allow rules; empty: no egress at all. */
  allowHosts: string[];
  mounts: MountView[];
  disks: DiskView[];
  createdAt: string;
  /** The last start (absent for a VM never started). */
  startedAt?: string;
  /** When the last start's guest answered. */
  readyAt?: string;
  stoppedAt?: string;
  /** The snapshot it was restored from. */
  restoredFrom?: string;
  /** A warm pool's member; `taken` once handed out. */
  pool?: { name: string; taken: boolean };
  /** The accelerator its last start chose. */
  accelerator?: "kvm" | "hvf" | "tcg";
  /** Host processes of an active VM: corral's per-VM supervisor and the VMM. */
  pids?: { shim: number; vmm: number };
}

export interface SnapshotView {
  name: string;
  /** The VM it was taken from (it may have been removed since). */
  source: string;
  backend: Backend;
  /** The VMM version it must be restored with. */
  vmm: string;
  createdAt: string;
  /** The saved guest memory and device state. */
  memoryBytes: number;
  /** Frozen disks it owns (the root overlay and the VM's own data disks, not shared images). */
  diskBytes: number;
  /** How long the source VM was paused for it. */
  pausedMs: number;
  /** The image the source VM booted (its spec's `image`). */
  image: string;
  cpus: number;
  memoryMiB: number;
}

/** A built-in guest image (corral's kernel + initramfs), one build of it. */
export interface BuiltinImageView {
  kind: "builtin";
  name: string;
  version: string;
  /** sha256 over every input of the build. */
  digest: string;
  kernelRelease: string;
  createdAt: string;
  sizeBytes: number;
}

/** A pulled OCI image, by one of its references. */
export interface OciImageView {
  kind: "oci";
  /** Normalized, e.g. `docker.io/library/alpine:latest`. */
  reference: string;
  /** The manifest digest: the image's identity. */
  digest: string;
  /** `os/arch[/variant]`. */
  platform: string;
  /** The root filesystem built from it. */
  sizeBytes: number;
  pulledAt: string;
  layers: number;
  /** Compressed size of the layers (what a pull downloads). */
  layerBytes: number;
  /** The image's creation time from its config, when it has one. */
  created?: string;
  /** Env, WorkingDir, User, Entrypoint and Cmd: the defaults of commands run in it. */
  config: OciRunConfig;
}

export type ImageView = BuiltinImageView | OciImageView;

/** What a pull did. */
export interface PullView extends OciImageView {
  /** True when nothing was downloaded or built. */
  cached: boolean;
  /** Parts of layer entries that could not be kept (an undecodable xattr...). */
  warnings: string[];
}

export interface PoolView {
  name: string;
  /** How many ready VMs it keeps. */
  size: number;
  /** Names of members ready to be taken. */
  ready: string[];
  starting: number;
  handedOut: number;
  /** Why the last refill failed, if it did. */
  lastError?: string;
  /** Members are restored from this snapshot (else booted from the pool's spec). */
  fromSnapshot?: string;
}

export interface BackendView {
  name: Backend;
  /** Whether it runs on this host's operating system. */
  runsHere: boolean;
  /** What it can do (docs/capabilities.md); a spec outside it is refused before anything exists. */
  features: DriverFeatures;
}

/** What `setup` installed and built. */
export interface SetupView {
  /** Debian packages apt installed. */
  installedPackages: string[];
  /** What the backends fetched (QEMU: vhost-device-vsock). */
  components: { name: string; version: string }[];
  image: BuiltinImageView;
}
