/** corral's library API. The CLI is a thin layer over exactly these exports. */
export { CorralError, isCorralError, type ErrorCode } from "./errors.js";
export { Manager, type ManagerEvent, type ManagerOptions, type VmInfo } from "./core/manager.js";
export { runInVm, type RunOptions, type RunResult } from "./core/run.js";
export { VM_STATES, type VmState } from "./core/record.js";
export { parseSpec, type VmSpec, type VmSpecInput } from "./spec/schema.js";
export { parseSize, formatSize } from "./spec/size.js";
export type { Driver, DriverCapabilities, LaunchPlan, VmContext } from "./drivers/driver.js";
export { QemuDriver } from "./drivers/qemu/driver.js";
export { chooseAccelerator } from "./drivers/qemu/accel.js";
export { AgentClient } from "./protocols/agent/client.js";
export { QmpClient } from "./protocols/qmp/client.js";
export { connectVsock } from "./protocols/hybrid-vsock/connect.js";
export { doctor, type DoctorReport } from "./host/doctor.js";
export { setup, type SetupOptions, type SetupResult } from "./host/setup.js";
export type { ImageInfo } from "./images/image-info.js";
export type { ProgressEvent, ProgressListener } from "./core/progress.js";
