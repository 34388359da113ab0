/** The drivers this build ships (Lima's register.go files, gathered in one place). */
import { QemuDriver } from "./qemu/driver.js";
import { DriverRegistry } from "./registry.js";

export function builtinDrivers(): DriverRegistry {
  return new DriverRegistry().register("qemu", () => new QemuDriver());
}
