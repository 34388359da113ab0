/**
 * Connections to the guest agents of this process's VMs. exec() and agent() keep a few idle
 * agent connections per VM: a warm guest handler saves a process start per command
 * (docs/agent-protocol.md, keep=1). Idle ones never hold the process open and close well
 * before the agent's own 120 s limit. A VM's connections are dropped when it stops, is
 * removed or snapshotted, and when it starts again (`life` is its startedAt).
 */
import type { GuestChannel } from "../guest/channel.js";
import { AgentClient, type KeptConnectionsOptions } from "../protocols/agent/client.js";
import { AGENT_VSOCK_PORT } from "../protocols/agent/ports.js";

export const AGENT_KEEP_ALIVE = { idleMs: 10_000, max: 4 };

/** A client of the agent behind `channel`, one connection per operation unless kept alive. */
export function agentOver(channel: GuestChannel, keepAlive?: KeptConnectionsOptions): AgentClient {
  return new AgentClient(() => channel.dial(AGENT_VSOCK_PORT, { timeoutMs: 5_000 }), { keepAlive });
}

export class GuestConnections {
  /** By the VM's channel socket; `life` tells a restarted VM's connections from the old ones. */
  private readonly kept = new Map<string, { life: string; client: AgentClient }>();

  /** The kept agent client of a running VM (made on first use). */
  agent(key: string, life: string, channel: GuestChannel): AgentClient {
    const current = this.kept.get(key);
    if (current?.life === life) return current.client;
    current?.client.close();
    const client = agentOver(channel, AGENT_KEEP_ALIVE);
    this.kept.set(key, { life, client });
    return client;
  }

  forget(key: string): void {
    this.kept.get(key)?.client.close();
    this.kept.delete(key);
  }
}
