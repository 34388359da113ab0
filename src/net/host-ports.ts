/**
 * Host ports a VM forwards: a create-time check that each is free, and the errors that name
 * the busy one. Used by the lifecycle (before any boot) and by the daemon (when it binds).
 */
import { createServer } from "node:net";
import { CorralError } from "../errors.js";
import type { PortForward } from "../spec/ports.js";

export function portError(forward: PortForward, err: NodeJS.ErrnoException): CorralError {
  const where = `${forward.hostIp}:${forward.hostPort}`;
  if (err.code === "EADDRINUSE") {
    return new CorralError("PORT_IN_USE", `host port ${where} is already in use`, {
      hint: `choose another host port (e.g. -p ${forward.hostPort + 1}:${forward.guestPort}), or stop what listens on ${where}`,
    });
  }
  if (err.code === "EACCES") {
    return new CorralError("PORT_IN_USE", `not allowed to listen on ${where}`, {
      hint: "ports below 1024 need root; choose a port of 1024 or more",
    });
  }
  if (err.code === "EADDRNOTAVAIL") {
    return new CorralError("PORT_IN_USE", `${forward.hostIp} is not an address of this host`, {
      hint: "use 127.0.0.1 (the default), 0.0.0.0, or an address from `ip addr`",
    });
  }
  return new CorralError("PORT_IN_USE", `cannot listen on ${where}: ${err.message}`, {
    cause: err,
  });
}

/** Create-time check: binds and releases each host port, naming the first busy one. */
export async function checkPortsFree(forwards: readonly PortForward[]): Promise<void> {
  for (const forward of forwards) {
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", (err: NodeJS.ErrnoException) => reject(portError(forward, err)));
      probe.listen({ host: forward.hostIp, port: forward.hostPort, exclusive: true }, () =>
        probe.close(() => resolve()),
      );
    });
  }
}
