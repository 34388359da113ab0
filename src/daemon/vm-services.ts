/**
 * Everything the daemon runs for one VM: its port forwards, its egress proxy (the host end of
 * guest-initiated vsock connections on port 1026), and its port on a switch. Built from the
 * VM's record; torn down when the VM stops, fails or is removed.
 */
import type { Duplex } from "node:stream";
import type { GuestChannel } from "../guest/channel.js";
import type { InstancePaths } from "../paths/layout.js";
import { agentOver } from "../vm/guest.js";
import type { VmRecord } from "../vm/record.js";
import { type ForwardStatus, PortForwarder } from "./forwards.js";

export interface VmServicesStatus {
  name: string;
  id: string;
  forwards: ForwardStatus[];
  egress: { rules: string[]; log: string } | null;
  switch: string | null;
}

export interface VmServiceParts {
  /** Egress proxy for this VM (closes its listener), when it has --allow-host rules. */
  egress?: { close(): Promise<void> };
  /** Its switch port, when on --network switch:NAME. */
  switchPort?: { name: string; close(): Promise<void> };
}

export class VmServices {
  private constructor(
    readonly record: VmRecord,
    readonly paths: InstancePaths,
    private readonly forwarders: PortForwarder[],
    private readonly parts: VmServiceParts,
  ) {}

  /**
   * Binds every forward first (a busy port fails the whole attach, and what was bound is
   * released), then starts the rest.
   */
  static async attach(
    record: VmRecord,
    paths: InstancePaths,
    channel: GuestChannel,
    startParts: (
      record: VmRecord,
      paths: InstancePaths,
      channel: GuestChannel,
    ) => Promise<VmServiceParts>,
  ): Promise<VmServices> {
    const agent = agentOver(channel);
    const openGuest = (port: number): Promise<Duplex> => agent.tcpConnect(port);
    const forwarders: PortForwarder[] = [];
    try {
      for (const forward of record.spec.ports) {
        forwarders.push(await PortForwarder.listen(forward, openGuest));
      }
      const parts = await startParts(record, paths, channel);
      return new VmServices(record, paths, forwarders, parts);
    } catch (err) {
      await Promise.all(forwarders.map((f) => f.close()));
      throw err;
    }
  }

  status(): VmServicesStatus {
    return {
      name: this.record.name,
      id: this.record.id,
      forwards: this.forwarders.map((f) => f.status()),
      egress:
        this.parts.egress === undefined
          ? null
          : { rules: this.record.spec.allowHosts, log: this.paths.egressLog },
      switch: this.parts.switchPort?.name ?? null,
    };
  }

  async close(): Promise<void> {
    await Promise.all([
      ...this.forwarders.map((f) => f.close()),
      this.parts.egress?.close(),
      this.parts.switchPort?.close(),
    ]);
  }
}
