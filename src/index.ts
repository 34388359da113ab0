/** corral's library API. The CLI is a thin layer over exactly these exports. */

export { Manager, type ManagerEvent, type ManagerOptions, type VmInfo } from "./core/manager.js";
export type { ProgressEvent, ProgressListener } from "./core/progress.js";
export { VM_STATES, type VmState } from "./core/record.js";
export { type RunOptions, type RunResult, runInVm } from "./core/run.js";
export type { Driver, DriverCapabilities, LaunchPlan, VmContext } from "./drivers/driver.js";
export { chooseAccelerator } from "./drivers/qemu/accel.js";
export { QemuDriver } from "./drivers/qemu/driver.js";
export { CorralError, type ErrorCode, isCorralError } from "./errors.js";
export { type DoctorReport, doctor } from "./host/doctor.js";
export { type SetupOptions, type SetupResult, setup } from "./host/setup.js";
export type { ImageInfo } from "./images/image-info.js";
export { AgentClient } from "./protocols/agent/client.js";
export { connectVsock } from "./protocols/hybrid-vsock/connect.js";
export { QmpClient } from "./protocols/qmp/client.js";
export { parseSpec, type VmSpec, type VmSpecInput } from "./spec/schema.js";
export { formatSize, parseSize } from "./spec/size.js";
