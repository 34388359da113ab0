/**
 * corral's library API, as an explicit list. The CLI is a client of exactly these exports
 * (.dependency-cruiser.cjs: cli-uses-the-public-entry), so whatever it can do, an SDK user can.
 *
 * Start with `new Corral()`: `corral.vms`, `.images`, `.snapshots`, `.pools`, `Vm` handles and
 * the views they return. The functions and the Manager after them are the layers the SDK is
 * made of (the CLI uses them); the Driver/Machine contract is for adding a backend.
 *
 * @packageDocumentation
 */

// The SDK: one Corral per state directory, handles on VMs, and the views it returns.
export type { ProgressEvent, ProgressListener } from "./base/progress.js";
export type { Environment } from "./paths/roots.js";
export {
  Corral,
  type CorralOptions,
  type CorralSetupOptions,
} from "./sdk/corral.js";
export type { EventsOptions, VmEvent } from "./sdk/events.js";
export { type ImagePullOptions, Images } from "./sdk/images.js";
export { type PoolInput, Pools } from "./sdk/pools.js";
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
export type { VmServicesStatus } from "./daemon/vm-services.js";
export type { DoctorReport } from "./setup/doctor.js";
export type { VmState } from "./vm/record.js";
export type { HostServices } from "./vm/services.js";
export type { GuestMemory, NetCounters, ProcessUsage, VmStats } from "./vm/stats.js";

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

// The VM spec and the strings users type for it.
export { type Mount, parseVolumeFlag } from "./spec/mounts.js";
export { formatPortForward, type PortForward, parsePortFlag } from "./spec/ports.js";
export {
  BACKENDS,
  parseEnvPairs,
  parseSpec,
  specError,
  type VmSpec,
  type VmSpecInput,
} from "./spec/schema.js";
export { formatSize, parseSize } from "./spec/size.js";

// VMs: the lifecycle Manager, `run`, snapshots (the layers under `corral.vms`).
export type { InstanceFiles, InstancePaths } from "./paths/layout.js";
export { Manager } from "./sdk/manager.js";
export { type RunOptions, type RunResult, runInVm } from "./sdk/run.js";
export { type SnapshotSummary, summarizeSnapshot } from "./sdk/snapshot-summary.js";
export type { VmEventInput, VmEvents } from "./vm/events.js";
export type { ManagerEvent, ManagerOptions, StopOptions, VmInfo } from "./vm/manager.js";
export { ACTIVE_STATES, VM_STATES } from "./vm/record.js";
export type { RestoreOptions } from "./vm/snapshot-restore.js";
export { type SnapshotMeta, stateBytes } from "./vm/snapshot-store.js";

// The guest agent: exec, files, port connections (the layer under `vm.exec`).
export {
  AgentClient,
  type AgentClientOptions,
  type Connect,
  type ExecProcess,
  type ExecRequest,
  type ExecResult,
  type KeptConnectionsOptions,
  type PingResult,
  type ReadFileOptions,
  type RunRequest as AgentRunRequest,
  type RunResult as AgentRunResult,
  type TcpConnectOptions,
  type WriteFileOptions,
} from "./protocols/agent/client.js";

// Images: the built-in image and pulled OCI images (the layer under `corral.images`).
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
export { type BasicCredentials, parseCredentials } from "./protocols/oci/credentials.js";
export { type Platform, parsePlatform } from "./protocols/oci/platform.js";
export { parseReference, type Reference } from "./protocols/oci/reference.js";

// Warm pools and the per-user daemon that keeps them (the layer under `corral.pools`).
export type { DaemonHealth } from "./daemon/client.js";
export type { Daemon } from "./daemon/daemon.js";
export type { ForwardStatus } from "./daemon/forwards.js";
export { createPool, listPools, removePool } from "./daemon/pool-client.js";
export type { PoolStatus } from "./daemon/pools.js";
export {
  type DaemonStatus,
  daemonStatus,
  type RunDaemonOptions,
  runDaemon,
  stopDaemon,
} from "./sdk/daemon.js";

// The host: what corral needs installed, and installing it.
export type { AcceleratorChoice } from "./drivers/qemu/accel.js";
export { type BackendReport, type DoctorCheck, doctor } from "./setup/doctor.js";
export { type SetupOptions, type SetupResult, setup } from "./setup/setup.js";

// Backends: the Driver/Machine contract, the registry, the feature records.
export { builtinDrivers } from "./drivers/builtin.js";
export type {
  AgentProbe,
  Backend,
  BootImage,
  BootMode,
  DeviceCounters,
  DiskBackend,
  DiskCounters,
  DiskFile,
  DiskFormat,
  Driver,
  DriverFeatures,
  HostCheck,
  HostComponent,
  LaunchPlan,
  Machine,
  MachineHost,
  NetworkKind,
  ProcessPlan,
  SaveContext,
  SaveResult,
  SnapshotFile,
  Snapshotter,
  SpecProblem,
  VmContext,
} from "./drivers/driver.js";
export { type DriverFactory, DriverRegistry } from "./drivers/registry.js";
export type { DialOptions, GuestChannel } from "./guest/channel.js";
