/**
 * Port forwards: `-p [HOST_IP:]HOST_PORT:GUEST_PORT` (TCP). The host end listens on
 * 127.0.0.1 unless an address is given (unlike Docker, nothing is exposed to the network by
 * default); the guest end is reached through the agent, so forwards need no NIC.
 */
import { CorralError } from "../errors.js";
import { isIpv4 } from "./network.js";

export interface PortForward {
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

const HINT = "write -p 8080:80 (host 127.0.0.1:8080 -> guest port 80) or -p 0.0.0.0:8080:80";

function port(text: string, what: string, raw: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new CorralError("INVALID_ARGUMENT", `-p ${raw}: ${what} "${text}" is not 1-65535`, {
      hint: HINT,
    });
  }
  return Number(text);
}

export function parsePortFlag(raw: string): PortForward {
  const parts = raw.split(":");
  if (parts.length === 2) {
    return {
      hostIp: "127.0.0.1",
      hostPort: port(parts[0]!, "host port", raw),
      guestPort: port(parts[1]!, "guest port", raw),
    };
  }
  if (parts.length === 3) {
    if (!isIpv4(parts[0]!)) {
      throw new CorralError(
        "INVALID_ARGUMENT",
        `-p ${raw}: "${parts[0]}" is not an IPv4 address of this host`,
        { hint: HINT },
      );
    }
    return {
      hostIp: parts[0]!,
      hostPort: port(parts[1]!, "host port", raw),
      guestPort: port(parts[2]!, "guest port", raw),
    };
  }
  throw new CorralError("INVALID_ARGUMENT", `-p ${raw}: expected [HOST_IP:]HOST_PORT:GUEST_PORT`, {
    hint: HINT,
  });
}

export function formatPortForward(p: PortForward): string {
  return `${p.hostIp}:${p.hostPort}->${p.guestPort}/tcp`;
}
