/**
 * IP addresses for egress rules and the policy: strict parsing (no octal, hex or short forms),
 * canonical formatting, CIDR math. The loose IPv4 parser only explains why such a form is
 * refused.
 */

export interface IpAddress {
  family: 4 | 6;
  /** 32 or 128 bits. */
  value: bigint;
}

const IPV4_OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4_STRICT = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`);

export function bitsOf(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** Dotted-quad decimal only, no leading zeros: `127.0.0.1`. */
export function parseIPv4Strict(text: string): bigint | undefined {
  if (!IPV4_STRICT.test(text)) return undefined;
  let value = 0n;
  for (const part of text.split(".")) value = (value << 8n) | BigInt(Number(part));
  return value;
}

/**
 * What inet_aton(3) (and the WHATWG URL parser) make of a numeric host: 1 to 4 parts, each
 * decimal, 0-octal or 0x-hex, the last one filling the remaining bytes. `127.1`,
 * `0x7f.0.0.1`, `2130706433` and `0177.0.0.1` all mean 127.0.0.1. Only used to explain why
 * such a form is refused.
 */
export function parseIPv4Loose(text: string): bigint | undefined {
  const parts = text.endsWith(".") ? text.slice(0, -1).split(".") : text.split(".");
  if (parts.length === 0 || parts.length > 4) return undefined;
  const numbers: bigint[] = [];
  for (const part of parts) {
    let n: bigint;
    if (/^0x[0-9a-f]*$/i.test(part)) n = part.length === 2 ? 0n : BigInt(part);
    else if (/^0[0-7]+$/.test(part)) n = BigInt(`0o${part.slice(1)}`);
    else if (/^(?:0|[1-9]\d*)$/.test(part)) n = BigInt(part);
    else return undefined;
    numbers.push(n);
  }
  let value = 0n;
  for (let i = 0; i < numbers.length - 1; i++) {
    const n = numbers[i]!;
    if (n > 255n) return undefined;
    value |= n << BigInt(8 * (3 - i));
  }
  const last = numbers[numbers.length - 1]!;
  if (last >= 1n << BigInt(8 * (5 - numbers.length))) return undefined;
  return value | last;
}

/**
 * True when a host would be read as an IPv4 address by a URL parser or inet_aton: its last
 * label (a trailing dot aside) is all digits or `0x` hex. Such a name is never a DNS name.
 */
export function looksLikeIPv4(host: string): boolean {
  const labels = host.split(".");
  if (labels.length > 1 && labels[labels.length - 1] === "") labels.pop();
  const last = labels[labels.length - 1] ?? "";
  return /^\d+$/.test(last) || /^0x[0-9a-f]*$/i.test(last);
}

/** RFC 4291 text forms, optionally ending in a strict dotted quad; no zone (`%eth0`). */
export function parseIPv6(input: string): bigint | undefined {
  if (input.length < 2 || input.length > 45) return undefined;
  let text = input.toLowerCase();
  const lastColon = text.lastIndexOf(":");
  if (lastColon < 0) return undefined;
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIPv4Strict(tail);
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    for (const group of part.split(":")) {
      if (!/^[0-9a-f]{1,4}$/.test(group)) return undefined;
      out.push(Number.parseInt(group, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  if (head === undefined) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const rest = groups(halves[1]!);
    if (rest === undefined || head.length + rest.length > 7) return undefined;
    all = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    if (head.length !== 8) return undefined;
    all = head;
  }
  let value = 0n;
  for (const group of all) value = (value << 16n) | BigInt(group);
  return value;
}

/** A strict address (`1.2.3.4`, `::1`, `::ffff:1.2.3.4`), or undefined. */
export function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIPv4Strict(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  if (!text.includes(":")) return undefined;
  const v6 = parseIPv6(text);
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** `::ffff:a.b.c.d` as the IPv4 address it denotes, otherwise undefined. */
export function unmapIPv4(ip: IpAddress): IpAddress | undefined {
  if (ip.family === 6 && ip.value >> 32n === 0xffffn) {
    return { family: 4, value: ip.value & 0xffffffffn };
  }
  return undefined;
}

/** `1.2.3.4` or RFC 5952 IPv6 (`2001:db8::1`, `::ffff:1.2.3.4` for mapped addresses). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
  }
  const mapped = unmapIPv4(ip);
  if (mapped !== undefined) return `::ffff:${formatIp(mapped)}`;
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** Whether `ip` lies in `network/prefix` (same family). */
export function inCidr(ip: IpAddress, family: 4 | 6, network: bigint, prefix: number): boolean {
  if (ip.family !== family) return false;
  const shift = BigInt(bitsOf(family) - prefix);
  return ip.value >> shift === network >> shift;
}

/** The IPv4-mapped IPv6 form of an IPv4 address. */
export function mapIPv4(ip: IpAddress): IpAddress {
  return { family: 6, value: MAPPED_PREFIX | ip.value };
}
