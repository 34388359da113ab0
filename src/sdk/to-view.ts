/**
 * Internal records -> the public views of sdk/views.ts. Each field is copied by name, never
 * spread, so a field added to a record (a path, a lifecycle detail) does not become API by
 * accident; test/unit/sdk-views.test.ts checks that no view carries a path of corral's.
 */
import type { PoolStatus } from "../daemon/pools.js";
import type { Driver } from "../drivers/driver.js";
import type { ImageInfo } from "../images/image-info.js";
import type { OciImage, PullResult } from "../images/oci-store.js";
import type { VmInfo } from "../vm/manager.js";
import type { SnapshotMeta } from "../vm/snapshot-store.js";
import { summarizeSnapshot } from "./snapshot-summary.js";
import type {
  BackendView,
  BuiltinImageView,
  OciImageView,
  PoolView,
  PullView,
  SnapshotView,
  VmImageView,
  VmView,
} from "./views.js";

function vmImage(vm: VmInfo): VmImageView {
  if (vm.rootDisk !== undefined) {
    return { kind: "oci", reference: vm.rootDisk.reference, digest: vm.rootDisk.manifestDigest };
  }
  if (vm.cloudDisk !== undefined && vm.spec.cloudImage !== undefined) {
    return { kind: "cloud", path: vm.spec.cloudImage, format: vm.cloudDisk.baseFormat };
  }
  return {
    kind: "builtin",
    name: vm.image.name,
    version: vm.image.version,
    digest: vm.image.digest,
  };
}

/** The guest's address: the one corral allocated, else a static one from the spec. */
function guestIp(vm: VmInfo): string | undefined {
  if (vm.guestIp !== undefined) return vm.guestIp;
  const ip = vm.spec.ip;
  return ip === undefined || ip === "dhcp" ? undefined : ip.replace(/\/\d+$/, "");
}

export function vmView(vm: VmInfo): VmView {
  const { spec } = vm;
  const view: VmView = {
    name: vm.name,
    id: vm.id,
    backend: spec.backend,
    state: vm.state,
    image: vmImage(vm),
    cpus: spec.cpus,
    memoryMiB: spec.memory,
    network: spec.network,
    ports: spec.ports.map((p) => ({
      hostIp: p.hostIp,
      hostPort: p.hostPort,
      guestPort: p.guestPort,
    })),
    allowHosts: [...spec.allowHosts],
    mounts: spec.mounts.map((m) => ({
      source: m.source,
      target: m.target,
      readOnly: m.readOnly,
      type: m.type,
    })),
    disks: spec.disks.map((d) =>
      "sizeMiB" in d
        ? { kind: "new" as const, sizeMiB: d.sizeMiB }
        : { kind: "file" as const, path: d.path, readOnly: d.readOnly },
    ),
    createdAt: vm.createdAt,
  };
  const ip = guestIp(vm);
  if (vm.reason !== undefined) view.reason = vm.reason;
  if (ip !== undefined) view.ip = ip;
  if (vm.startedAt !== undefined) view.startedAt = vm.startedAt;
  if (vm.readyAt !== undefined) view.readyAt = vm.readyAt;
  if (vm.stoppedAt !== undefined) view.stoppedAt = vm.stoppedAt;
  if (vm.restoredFrom !== undefined) view.restoredFrom = vm.restoredFrom;
  if (vm.pool !== undefined) view.pool = { name: vm.pool.name, taken: vm.pool.taken };
  if (vm.accel !== undefined) view.accelerator = vm.accel.accel;
  if (vm.pids !== undefined) view.pids = { shim: vm.pids.shim, vmm: vm.pids.vmm };
  return view;
}

export function snapshotView(meta: SnapshotMeta): SnapshotView {
  const summary = summarizeSnapshot(meta);
  return {
    name: summary.name,
    source: summary.source,
    backend: meta.backend,
    vmm: summary.vmm,
    createdAt: summary.createdAt,
    memoryBytes: summary.memoryBytes,
    diskBytes: summary.diskBytes,
    pausedMs: summary.pausedMs,
    image: summary.image,
    cpus: meta.record.spec.cpus,
    memoryMiB: meta.record.spec.memory,
  };
}

export function builtinImageView(image: ImageInfo): BuiltinImageView {
  return {
    kind: "builtin",
    name: image.name,
    version: image.version,
    digest: image.digest,
    kernelRelease: image.kernelRelease,
    createdAt: image.createdAt,
    sizeBytes: image.sizeBytes,
  };
}

export function ociImageView(image: OciImage): OciImageView {
  const view: OciImageView = {
    kind: "oci",
    reference: image.reference,
    digest: image.manifestDigest,
    platform: image.platform,
    sizeBytes: image.sizeBytes,
    pulledAt: image.pulledAt,
    layers: image.layers,
    layerBytes: image.layerBytes,
    config: image.config,
  };
  if (image.created !== undefined) view.created = image.created;
  return view;
}

export function pullView(result: PullResult): PullView {
  return { ...ociImageView(result), cached: result.cached, warnings: [...result.warnings] };
}

export function poolView(pool: PoolStatus): PoolView {
  const view: PoolView = {
    name: pool.name,
    size: pool.size,
    ready: [...pool.ready],
    starting: pool.starting,
    handedOut: pool.handedOut,
  };
  if (pool.lastError !== undefined) view.lastError = pool.lastError;
  if (pool.fromSnapshot !== undefined) view.fromSnapshot = pool.fromSnapshot;
  return view;
}

export function backendView(driver: Driver): BackendView {
  return {
    name: driver.name,
    runsHere: driver.features.hosts.includes(process.platform),
    features: driver.features,
  };
}
