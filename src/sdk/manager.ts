/** The lifecycle Manager as the SDK hands it out: host services served by the per-user daemon. */
import { daemonServices } from "../daemon/services-client.js";
import { type ManagerOptions, Manager as VmManager } from "../vm/manager.js";

export class Manager extends VmManager {
  constructor(options: ManagerOptions = {}) {
    super({ services: daemonServices, ...options });
  }
}
