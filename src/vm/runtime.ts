/** What every lifecycle operation works with, built once by the Manager. */
import type { Driver } from "../drivers/driver.js";
import type { DriverRegistry } from "../drivers/registry.js";
import type { VmEvents } from "./events.js";
import type { GuestConnections } from "./guest.js";
import type { VmRecord } from "./record.js";
import type { HostServices } from "./services.js";

export interface Runtime {
  drivers: DriverRegistry;
  services: HostServices;
  events: VmEvents;
  guests: GuestConnections;
}

export function driverOf(rt: Runtime, record: Pick<VmRecord, "spec">): Driver {
  return rt.drivers.get(record.spec.backend);
}
