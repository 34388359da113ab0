/**
 * Network modes and the guest's address, as written in a spec or on the command line:
 *   none            no NIC at all (the default)
 *   nat             QEMU user-mode networking (slirp), DHCP in the guest
 *   tap:IFACE       an existing TAP device, or one corral creates (root only) and removes
 *   switch:NAME     an L2 segment shared with the other VMs on switch NAME (corral's daemon)
 */
import { CorralError } from "../errors.js";

export type NetworkMode =
  | { kind: "none" }
  | { kind: "nat" }
  | { kind: "tap"; iface: string }
  | { kind: "switch"; name: string };

/** Linux interface names: at most 15 bytes, no '/', ':' or whitespace. */
export const IFACE_PATTERN = /^[a-zA-Z0-9_.-]{1,15}$/;
export const SWITCH_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

export const NETWORK_HINT = "use one of none | nat | tap:IFACE | switch:NAME (e.g. switch:lab)";

/** Returns an error message, or undefined when `value` is a valid network mode. */
export function networkModeProblem(value: string): string | undefined {
  if (value === "none" || value === "nat") return undefined;
  if (value.startsWith("tap:")) {
    return IFACE_PATTERN.test(value.slice(4))
      ? undefined
      : `"${value}": a TAP interface name is 1-15 letters, digits, '.', '_' or '-'`;
  }
  if (value.startsWith("switch:")) {
    return SWITCH_NAME_PATTERN.test(value.slice(7))
      ? undefined
      : `"${value}": a switch name is lowercase letters, digits, '.', '_' or '-' (at most 32)`;
  }
  return `"${value}" is not a network mode`;
}

export function parseNetworkMode(value: string): NetworkMode {
  const problem = networkModeProblem(value);
  if (problem !== undefined) {
    throw new CorralError("INVALID_SPEC", `network: ${problem}`, {
      field: "network",
      hint: NETWORK_HINT,
    });
  }
  if (value === "none" || value === "nat") return { kind: value };
  if (value.startsWith("tap:")) return { kind: "tap", iface: value.slice(4) };
  return { kind: "switch", name: value.slice(7) };
}

export interface Ipv4Cidr {
  address: string;
  prefix: number;
}

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

export function isIpv4(text: string): boolean {
  return IPV4.test(text);
}

/** `10.0.0.2/24`: the guest's static address on its NIC. */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!isIpv4(address) || !/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix < 8 || prefix > 30) return undefined;
  return { address, prefix };
}

export function ipv4ToInt(address: string): number {
  return address.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function intToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/**
 * Addresses corral hands out on a switch segment when the user gives none: every switch is
 * its own isolated L2 segment, so all of them can use the same subnet.
 */
export const SWITCH_SUBNET = { network: "10.213.0.0", prefix: 24, first: 2, last: 254 };

export function switchAddress(host: number): string {
  return `${intToIpv4(ipv4ToInt(SWITCH_SUBNET.network) + host)}/${SWITCH_SUBNET.prefix}`;
}
