/**
 * The egress proxy and switch port of a VM (see vm-services.ts). The proxy's listener is the
 * host end of guest-initiated connections to port 1026 on the VM's guest channel.
 */
import { appendFileSync, renameSync, statSync } from "node:fs";
import type { GuestChannel } from "../guest/channel.js";
import { EgressPolicy } from "../net/egress/policy.js";
import { type EgressLogEntry, EgressProxy } from "../net/egress/proxy.js";
import { SwitchRegistry } from "../net/switch/registry.js";
import type { InstancePaths } from "../paths/layout.js";
import { parseAllowRules } from "../spec/allow-rules.js";
import { parseNetworkMode } from "../spec/network.js";
import type { VmRecord } from "../vm/record.js";
import type { VmServiceParts } from "./vm-services.js";

export const EGRESS_VSOCK_PORT = 1026;
/** The egress log rotates once past this size (one older file is kept). */
const MAX_EGRESS_LOG_BYTES = 16 * 1024 * 1024;

/** Every switch of this daemon: VMs on one name share one segment. */
export const switches = new SwitchRegistry();

export async function startVmParts(
  record: VmRecord,
  paths: InstancePaths,
  channel: GuestChannel,
  log: (message: string, fields?: Record<string, unknown>) => void = () => {},
): Promise<VmServiceParts> {
  const parts: VmServiceParts = {};
  if (record.spec.allowHosts.length > 0) parts.egress = await startEgress(record, paths, channel);
  const mode = parseNetworkMode(record.spec.network);
  if (mode.kind === "switch") {
    // QEMU creates its socket only once it runs, after this attach: connect in the
    // background (the registry redials after drops, e.g. after a daemon restart).
    const port = record.id;
    switches.connect(mode.name, port, paths.netSocket, { timeoutMs: 120_000 }).catch((err) => {
      log("switch port did not connect", { vm: record.name, error: String(err) });
    });
    parts.switchPort = {
      name: mode.name,
      close: async () => switches.disconnect(port),
    };
  }
  return parts;
}

async function startEgress(record: VmRecord, paths: InstancePaths, channel: GuestChannel) {
  const proxy = new EgressProxy({
    policy: new EgressPolicy(parseAllowRules(record.spec.allowHosts)),
    onDecision: (entry) => appendEgressLog(paths.egressLog, record.name, entry),
  });
  // Half-open: a tunnel's client may finish sending while the reply still flows.
  const server = await channel.listen(EGRESS_VSOCK_PORT, (conn) => proxy.handle(conn), {
    allowHalfOpen: true,
  });
  server.on("error", () => {});
  return {
    async close() {
      proxy.close();
      // Closing a unix socket server removes its socket file.
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function appendEgressLog(path: string, vm: string, entry: EgressLogEntry): void {
  try {
    if (statSync(path).size > MAX_EGRESS_LOG_BYTES) renameSync(path, `${path}.1`);
  } catch {
    // no log yet
  }
  appendFileSync(path, `${JSON.stringify({ vm, ...entry })}\n`, { mode: 0o600 });
}
