/**
 * corral's library API, as an explicit list. The CLI is a client of exactly these exports
 * (.dependency-cruiser.cjs: cli-uses-the-public-entry), so whatever it can do, an SDK user can.
 *
 * Start with `new Corral()` (the SDK: `corral.vms`, `.images`, `.snapshots`, `.pools`, `Vm`
 * handles, public views); the functions and the Manager further down are what the CLI uses.
 *
 * @packageDocumentation
 */

// Progress of long operations (pulls, setup).
export type { ProgressEvent, ProgressListener } from "./base/progress.js";
export type { DaemonHealth } from "./daemon/client.js";
export type { Daemon } from "./daemon/daemon.js";
// Warm pools and the per-user daemon that keeps them.
export { createPool, listPools, removePool } from "./daemon/pool-client.js";
export type { PoolInput, PoolStatus } from "./daemon/pools.js";
export type { VmServicesStatus } from "./daemon/vm-services.js";
// Backends: the Driver/Machine contract, the registry, the feature records.
export { builtinDrivers } from "./drivers/builtin.js";
export type {
  Backend,
  DiskCounters,
  Driver,
  DriverFeatures,
  LaunchPlan,
  Machine,
  MachineHost,
  Snapshotter,
  VmContext,
} from "./drivers/driver.js";
// The host: what corral needs installed, and installing it.
export type { AcceleratorChoice } from "./drivers/qemu/accel.js";
export { DriverRegistry } from "./drivers/registry.js";
// Errors: one type, a stable code, a kind (HTTP status and CLI exit code follow from it).
export {
  asCorralError,
  CorralError,
  type CorralErrorJson,
  type CorralErrorOptions,
  cancelled,
  ERROR_CODES,
  ERROR_KINDS,
  type ErrorCode,
  type ErrorKind,
  exitCode,
  httpStatus,
  isCorralError,
  isErrorCode,
  kindOf,
  throwIfCancelled,
} from "./errors.js";
// Images: the built-in image and pulled OCI images.
export type { ImageInfo } from "./images/image-info.js";
export {
  findOciImage,
  listOciImages,
  type OciImage,
  type OciRunConfig,
  type PullOptions,
  type PullResult,
  pullImage,
  shortDigest,
} from "./images/oci-store.js";
export {
  type PruneResult,
  pruneOciImages,
  type RemoveResult,
  removeOciImage,
} from "./images/oci-store-prune.js";
export { findBuiltinImage, listImages } from "./images/store.js";
export type { Environment } from "./paths/roots.js";
export type { ExecProcess, ExecRequest, ExecResult } from "./protocols/agent/client.js";
export { AgentClient } from "./protocols/agent/client.js";
export { type BasicCredentials, parseCredentials } from "./protocols/oci/credentials.js";
export { type Platform, parsePlatform } from "./protocols/oci/platform.js";
export { parseReference, type Reference } from "./protocols/oci/reference.js";
// The SDK: one Corral per state directory, handles on VMs, and the views it returns.
export {
  Corral,
  type CorralOptions,
  type CorralSetupOptions,
} from "./sdk/corral.js";
export {
  type DaemonStatus,
  daemonStatus,
  type RunDaemonOptions,
  runDaemon,
  stopDaemon,
} from "./sdk/daemon.js";
export type { EventsOptions, VmEvent } from "./sdk/events.js";
export { type ImagePullOptions, Images } from "./sdk/images.js";
// VMs: the lifecycle Manager and `run`.
export { Manager } from "./sdk/manager.js";
export { Pools } from "./sdk/pools.js";
export { type RunOptions, type RunResult, runInVm } from "./sdk/run.js";
export { type SnapshotSummary, summarizeSnapshot } from "./sdk/snapshot-summary.js";
export { type RestoreSnapshotOptions, Snapshots } from "./sdk/snapshots.js";
export type {
  BackendView,
  BuiltinImageView,
  DiskView,
  ImageView,
  MountView,
  OciImageView,
  PoolView,
  PortView,
  PullView,
  SetupView,
  SnapshotView,
  VmImageView,
  VmView,
} from "./sdk/views.js";
export {
  type CommandOutput,
  type LogTailOptions,
  type MemoryTarget,
  type SignalOptions,
  Vm,
  type VmRunOptions,
  type VmStopOptions,
} from "./sdk/vm.js";
export { type VmCreateOptions, Vms, type VmsRunOptions } from "./sdk/vms.js";
export {
  type BackendReport,
  type DoctorCheck,
  type DoctorReport,
  doctor,
} from "./setup/doctor.js";
export { type SetupOptions, type SetupResult, setup } from "./setup/setup.js";
export { type Mount, parseVolumeFlag } from "./spec/mounts.js";
export { formatPortForward, type PortForward, parsePortFlag } from "./spec/ports.js";
// The VM spec and the strings users type for it.
export {
  parseEnvPairs,
  parseSpec,
  specError,
  type VmSpec,
  type VmSpecInput,
} from "./spec/schema.js";
export { formatSize, parseSize } from "./spec/size.js";
export type { ManagerEvent, ManagerOptions, StopOptions, VmInfo } from "./vm/manager.js";
export { ACTIVE_STATES, VM_STATES, type VmState } from "./vm/record.js";
export type { HostServices } from "./vm/services.js";
// Snapshots.
export { type SnapshotMeta, stateBytes } from "./vm/snapshot-store.js";
export type { GuestMemory, NetCounters, ProcessUsage, VmStats } from "./vm/stats.js";
