/**
 * Host services of a VM that must outlive the command that started it: port forwards, the
 * egress proxy and a switch port. The lifecycle only says when (attach before the VMM
 * launches, so a busy host port fails the start before any boot; detach when it stops); who
 * runs them is injected (the per-user daemon, see daemon/services-client.ts), so this layer
 * never imports the daemon that sits above it.
 */
import type { VmSpec } from "../spec/schema.js";

export interface HostServices {
  /** Starts serving the VM; throws (e.g. a host port in use) when it cannot. */
  attach(name: string): Promise<void>;
  /** Stops serving the VM; best effort (a VM that is gone is noticed anyway). */
  detach(name: string): Promise<void>;
}

/** The parts of a VM's spec that need host services. */
export function needsHostServices(spec: VmSpec): boolean {
  return spec.ports.length > 0 || spec.allowHosts.length > 0 || spec.network.startsWith("switch:");
}

/** For embedders that run no daemon: a VM that needs services cannot start. */
export const noHostServices: HostServices = {
  attach: async (name) => {
    const { CorralError } = await import("../errors.js");
    throw new CorralError(
      "UNSUPPORTED",
      `VM "${name}" needs host services (ports, egress, switch)`,
      {
        hint: "construct the Manager with host services (the SDK entry does this for you)",
      },
    );
  },
  detach: async () => {},
};

/** Stops serving the VM if it was served (best effort: the daemon notices a gone VM anyway). */
export async function detachHostServices(
  services: HostServices,
  record: { name: string; spec: VmSpec },
): Promise<void> {
  if (!needsHostServices(record.spec)) return;
  await services.detach(record.name).catch(() => {});
}
