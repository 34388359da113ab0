/**
 * corral's library API, as an explicit list. The CLI is a client of exactly these exports
 * (.dependency-cruiser.cjs: cli-uses-the-public-entry), so whatever it can do, an SDK user can.
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
  Driver,
  DriverFeatures,
  LaunchPlan,
  Machine,
  MachineHost,
  Snapshotter,
  VmContext,
} from "./drivers/driver.js";
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
export type { ExecProcess, ExecRequest, ExecResult } from "./protocols/agent/client.js";
export { AgentClient } from "./protocols/agent/client.js";
export { type BasicCredentials, parseCredentials } from "./protocols/oci/credentials.js";
export { type Platform, parsePlatform } from "./protocols/oci/platform.js";
export { parseReference, type Reference } from "./protocols/oci/reference.js";
export {
  type DaemonStatus,
  daemonStatus,
  type RunDaemonOptions,
  runDaemon,
  stopDaemon,
} from "./sdk/daemon.js";
// VMs: the lifecycle Manager and `run`.
export { Manager } from "./sdk/manager.js";
export { type RunOptions, type RunResult, runInVm } from "./sdk/run.js";
export { type SnapshotSummary, summarizeSnapshot } from "./sdk/snapshots.js";
// The host: what corral needs installed, and installing it.
export { type DoctorReport, doctor } from "./setup/doctor.js";
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
// Snapshots.
export { type SnapshotMeta, stateBytes } from "./vm/snapshot-store.js";
export type { VmStats } from "./vm/stats.js";
