/** corral's library API. The CLI is a thin layer over exactly these exports. */

export type { ProgressEvent, ProgressListener } from "./base/progress.js";
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
export { CorralError, type ErrorCode, isCorralError } from "./errors.js";
export type { ImageInfo } from "./images/image-info.js";
export { AgentClient } from "./protocols/agent/client.js";
export { Manager } from "./sdk/manager.js";
export { type RunOptions, type RunResult, runInVm } from "./sdk/run.js";
export { type DoctorReport, doctor } from "./setup/doctor.js";
export { type SetupOptions, type SetupResult, setup } from "./setup/setup.js";
export { parseSpec, type VmSpec, type VmSpecInput } from "./spec/schema.js";
export { formatSize, parseSize } from "./spec/size.js";
export type { ManagerEvent, ManagerOptions, VmInfo } from "./vm/manager.js";
export { VM_STATES, type VmState } from "./vm/record.js";
