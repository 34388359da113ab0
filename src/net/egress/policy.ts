/**
 * The egress decision: may the guest open a TCP connection to host:port? Pure and synchronous;
 * the proxy (proxy.ts) resolves names and asks. Deny by default. Decision order
 * (docs/egress.md):
 *
 * 1. The host is parsed strictly. `[v6]`, `v6` and dotted-quad IPv4 are IP literals. Any other
 *    host a URL parser or inet_aton would read as an IPv4 address (`127.1`, `0x7f.0.0.1`,
 *    `2130706433`, `010.0.0.1`, `127.0.0.1.`) is refused as an ambiguous IP literal. Names are
 *    lowercased, one trailing dot dropped, and must be valid ASCII DNS names (punycode).
 * 2. IP literals are matched against IP/CIDR rules only; names against name rules only.
 * 3. The port must be in the matching rule's ports.
 * 4. A name allowed by a rule is resolved by the caller; the first resolved address that is
 *    a public address, or a special-purpose one (private, loopback, link-local, metadata, ...)
 *    explicitly covered by an IP rule, is the address to connect to.
 *
 * "Explicitly covered": an IP rule covers a special-purpose address only when the rule is at
 * least as specific as the special-purpose block holding it, so `0.0.0.0/0:*` does not open
 * 127.0.0.1 or 10.0.0.5 (write `127.0.0.1:8080` or `10.0.0.0/8:*`), and only an exact
 * `169.254.169.254` rule opens the metadata address. This applies to IP literals as well.
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address: rules and classification see both
 * forms. NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses embedding a special-purpose IPv4
 * address are special-purpose too.
 */
import {
  type AllowRule,
  nameProblem,
  portAllowed,
  portsToString,
  ruleToString,
} from "../../spec/allow-rules.js";
import {
  formatIp,
  type IpAddress,
  inCidr,
  looksLikeIPv4,
  mapIPv4,
  parseIPv4Loose,
  parseIPv4Strict,
  parseIPv6,
  parseIp,
  unmapIPv4,
} from "../../spec/ip.js";

export interface EgressTarget {
  /** As requested: a name or an IP literal (IPv6 with or without brackets). */
  host: string;
  port: number;
  /** What the host resolved the name to; ignored for IP literals. */
  addresses: string[];
}

export interface EgressDecision {
  allowed: boolean;
  /** Always names host:port and why. */
  reason: string;
  /** The rule(s) that allowed it, as `ruleToString` writes them ("a + b" for name + IP rule). */
  rule?: string;
  /** When allowed: the address to connect to (IPv4-mapped addresses as IPv4). */
  address?: string;
}

/** What can be decided before resolving a name. */
export type EgressPrecheck =
  | { kind: "decided"; decision: EgressDecision }
  /** A rule allows this name and port: resolve `name`, then call `decide`. */
  | { kind: "resolve"; name: string };

export type ParsedHost =
  | { kind: "ip"; ip: IpAddress }
  | { kind: "name"; name: string }
  | { kind: "invalid"; problem: string };

// ---------------------------------------------------------------------------------------------
// Special-purpose addresses (IANA IPv4/IPv6 special-purpose registries, plus cloud metadata)

interface Special {
  label: string;
  /** The prefix of the special-purpose block, per address family of the forms it has. */
  prefix4?: number;
  prefix6?: number;
}

type Block = [network: string, prefix: number, label: string];

const V4_SPECIAL: Block[] = [
  ["169.254.169.254", 32, "the cloud metadata address"],
  ["168.63.129.16", 32, "a cloud platform address (Azure WireServer)"],
  ["0.0.0.0", 8, "an unspecified address"],
  ["10.0.0.0", 8, "a private address"],
  ["100.64.0.0", 10, "a shared (CGNAT) address"],
  ["127.0.0.0", 8, "a loopback address"],
  ["169.254.0.0", 16, "a link-local address"],
  ["172.16.0.0", 12, "a private address"],
  ["192.0.0.0", 24, "an IETF protocol address"],
  ["192.0.2.0", 24, "a documentation address"],
  ["192.88.99.0", 24, "a 6to4 relay address"],
  ["192.168.0.0", 16, "a private address"],
  ["198.18.0.0", 15, "a benchmarking address"],
  ["198.51.100.0", 24, "a documentation address"],
  ["203.0.113.0", 24, "a documentation address"],
  ["224.0.0.0", 4, "a multicast address"],
  ["255.255.255.255", 32, "the broadcast address"],
  ["240.0.0.0", 4, "a reserved address"],
];

/** Checked after the IPv4-embedding ranges (mapped, NAT64, 6to4). */
const V6_SPECIAL: Block[] = [
  ["::", 128, "an unspecified address"],
  ["::1", 128, "a loopback address"],
  ["::", 8, "a reserved address"],
  ["64:ff9b:1::", 48, "a local-use NAT64 address"],
  ["100::", 64, "a discard-only address"],
  ["2001:db8::", 32, "a documentation address"],
  ["2001::", 23, "an IETF protocol address"],
  ["3fff::", 20, "a documentation address"],
  ["fd00:ec2::254", 128, "the cloud metadata address"],
  ["fc00::", 7, "a unique-local address"],
  ["fe80::", 10, "a link-local address"],
  ["fec0::", 10, "a site-local address"],
  ["ff00::", 8, "a multicast address"],
];

const compile = (family: 4 | 6, blocks: Block[]) =>
  blocks.map(([network, prefix, label]) => ({
    network: (family === 4 ? parseIPv4Strict(network) : parseIPv6(network))!,
    prefix,
    label,
  }));
const V4_BLOCKS = compile(4, V4_SPECIAL);
const V6_BLOCKS = compile(6, V6_SPECIAL);

/** IPv6 ranges that embed an IPv4 address: [network, prefix, bit shift of the IPv4 part]. */
const EMBEDDINGS: { network: bigint; prefix: number; shift: bigint; what: string }[] = [
  { network: parseIPv6("::ffff:0:0")!, prefix: 96, shift: 0n, what: "IPv4-mapped" },
  { network: parseIPv6("64:ff9b::")!, prefix: 96, shift: 0n, what: "NAT64" },
  { network: parseIPv6("2002::")!, prefix: 16, shift: 80n, what: "6to4" },
];

function classifyV4(value: bigint): { prefix: number; label: string } | undefined {
  const ip: IpAddress = { family: 4, value };
  return V4_BLOCKS.find((b) => inCidr(ip, 4, b.network, b.prefix));
}

/** The special-purpose block holding `ip`, or undefined for a public unicast address. */
export function classifyAddress(ip: IpAddress): Special | undefined {
  if (ip.family === 4) {
    const block = classifyV4(ip.value);
    return block && { label: block.label, prefix4: block.prefix, prefix6: 96 + block.prefix };
  }
  for (const e of EMBEDDINGS) {
    if (!inCidr(ip, 6, e.network, e.prefix)) continue;
    const block = classifyV4((ip.value >> e.shift) & 0xffffffffn);
    if (block === undefined) return undefined;
    const label = `${block.label} (${e.what})`;
    if (e.what === "IPv4-mapped")
      return { label, prefix4: block.prefix, prefix6: 96 + block.prefix };
    return { label, prefix6: e.prefix + block.prefix };
  }
  const block = V6_BLOCKS.find((b) => inCidr(ip, 6, b.network, b.prefix));
  if (block !== undefined) return { label: block.label, prefix6: block.prefix };
  // Only 2000::/3 is allocated for global unicast.
  if (ip.value >> 125n !== 1n) return { label: "a reserved address", prefix6: 3 };
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Hosts

/** Parses a requested host strictly (see the header). */
export function parseRequestHost(host: string): ParsedHost {
  let text = host;
  const bracketed = text.startsWith("[") && text.endsWith("]");
  if (bracketed) text = text.slice(1, -1);
  if (bracketed || text.includes(":")) {
    const v6 = parseIPv6(text);
    if (v6 === undefined) return { kind: "invalid", problem: "it is not a valid IPv6 address" };
    return { kind: "ip", ip: { family: 6, value: v6 } };
  }
  const v4 = parseIPv4Strict(text);
  if (v4 !== undefined) return { kind: "ip", ip: { family: 4, value: v4 } };
  if (looksLikeIPv4(text)) {
    const loose = parseIPv4Loose(text);
    const meaning =
      loose === undefined
        ? ""
        : `, read as ${formatIp({ family: 4, value: loose })} by some parsers`;
    return { kind: "invalid", problem: `it is an ambiguous IP literal${meaning}` };
  }
  let name = text.toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  const problem = nameProblem(name);
  if (problem !== undefined) {
    return {
      kind: "invalid",
      problem: /not ASCII/.test(problem)
        ? "it is not ASCII; names must be sent in punycode (IDNA)"
        : `it is not a valid host name: ${problem}`,
    };
  }
  return { kind: "name", name };
}

function hostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `--allow-host` text for exactly this address and port. */
function ruleFor(ip: IpAddress, port: number): string {
  const v4 = unmapIPv4(ip) ?? ip;
  return v4.family === 4 ? `${formatIp(v4)}:${port}` : `'[${formatIp(v4)}]:${port}'`;
}

function connectAddress(ip: IpAddress): string {
  return formatIp(unmapIPv4(ip) ?? ip);
}

type IpRule = Extract<AllowRule, { kind: "ip" }>;
type NameRule = Exclude<AllowRule, { kind: "ip" }>;

function nameMatches(rule: NameRule, name: string): boolean {
  switch (rule.kind) {
    case "any-name":
      return true;
    case "name":
      return rule.name === name;
    case "suffix":
      return name.endsWith(`.${rule.suffix}`);
  }
}

/** The address as each family sees it: v4 and its mapped form, or mapped v6 and its v4. */
function forms(ip: IpAddress): IpAddress[] {
  if (ip.family === 4) return [ip, mapIPv4(ip)];
  const v4 = unmapIPv4(ip);
  return v4 === undefined ? [ip] : [ip, v4];
}

interface Compiled {
  rule: IpRule;
  network: bigint;
  text: string;
}

export class EgressPolicy {
  readonly rules: readonly AllowRule[];
  readonly #ipRules: Compiled[];
  readonly #nameRules: { rule: NameRule; text: string }[];

  constructor(rules: readonly AllowRule[]) {
    this.rules = Object.freeze(rules.map((r) => ({ ...r, ports: r.ports.map((p) => ({ ...p })) })));
    this.#ipRules = [];
    this.#nameRules = [];
    for (const rule of this.rules) {
      if (rule.kind === "ip") {
        const value = rule.family === 4 ? parseIPv4Strict(rule.address) : parseIPv6(rule.address);
        if (value === undefined) throw new TypeError(`invalid egress rule address ${rule.address}`);
        this.#ipRules.push({ rule, network: value, text: ruleToString(rule) });
      } else {
        this.#nameRules.push({ rule, text: ruleToString(rule) });
      }
    }
  }

  /**
   * Decides what needs no DNS: IP literals fully, names up to "a rule allows this name and
   * port". Names no rule allows are refused here, so they are never resolved (no DNS
   * queries for names the guest may not reach, which would be a covert channel).
   */
  precheck(host: string, port: number): EgressPrecheck {
    const early = this.#early(host, port);
    if ("decision" in early) return { kind: "decided", decision: early.decision };
    return { kind: "resolve", name: early.name };
  }

  decide(target: EgressTarget): EgressDecision {
    const early = this.#early(target.host, target.port);
    if ("decision" in early) return early.decision;
    return this.#decideResolved(early.name, target.port, early.rule, target.addresses);
  }

  #early(
    host: string,
    port: number,
  ): { decision: EgressDecision } | { name: string; rule: string } {
    const where = hostPort(host, port);
    const deny = (reason: string) => ({ decision: { allowed: false, reason } });
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return deny(`${where}: the port is not between 1 and 65535`);
    }
    const parsed = parseRequestHost(host);
    if (parsed.kind === "invalid") return deny(`${where} is refused: ${parsed.problem}`);
    if (parsed.kind === "ip") return { decision: this.#decideIp(where, parsed.ip, port) };
    const matching = this.#nameRules.filter((r) => nameMatches(r.rule, parsed.name));
    const chosen = matching.find((r) => portAllowed(r.rule.ports, port));
    if (chosen !== undefined) return { name: parsed.name, rule: chosen.text };
    if (matching.length === 0) return deny(`${where} matches no --allow-host rule`);
    const allowed = matching.map((r) => `${r.text} (ports ${portsToString(r.rule.ports)})`);
    return deny(`${where}: port ${port} is not allowed by --allow-host ${allowed.join(", ")}`);
  }

  /** The first IP rule explicitly covering `ip` (see the header), with the port, if any. */
  #ipRuleFor(
    ip: IpAddress,
    port: number,
    special: Special | undefined,
  ): { covering?: Compiled; tooBroad?: Compiled; wrongPort?: Compiled } {
    const out: { covering?: Compiled; tooBroad?: Compiled; wrongPort?: Compiled } = {};
    for (const c of this.#ipRules) {
      const { family, prefix } = c.rule;
      const form = forms(ip).find((f) => inCidr(f, family, c.network, prefix));
      if (form === undefined) continue;
      const needed = special === undefined ? 0 : family === 4 ? special.prefix4 : special.prefix6;
      if (needed === undefined || prefix < needed) {
        out.tooBroad ??= c;
        continue;
      }
      if (!portAllowed(c.rule.ports, port)) {
        out.wrongPort ??= c;
        continue;
      }
      out.covering = c;
      return out;
    }
    return out;
  }

  #decideIp(where: string, ip: IpAddress, port: number): EgressDecision {
    const special = classifyAddress(ip);
    const found = this.#ipRuleFor(ip, port, special);
    if (found.covering !== undefined) {
      return {
        allowed: true,
        reason: `${where} is allowed by --allow-host ${found.covering.text}`,
        rule: found.covering.text,
        address: connectAddress(ip),
      };
    }
    const fix = `allow it with --allow-host ${ruleFor(ip, port)}`;
    if (found.wrongPort !== undefined) {
      const r = found.wrongPort;
      return {
        allowed: false,
        reason: `${where}: port ${port} is not allowed by --allow-host ${r.text} (ports ${portsToString(r.rule.ports)})`,
      };
    }
    if (special !== undefined && found.tooBroad !== undefined) {
      return {
        allowed: false,
        reason: `${where}: ${formatIp(ip)} is ${special.label}, which --allow-host ${found.tooBroad.text} is too broad to cover; ${fix}`,
      };
    }
    const kind = special === undefined ? "" : ` (${formatIp(ip)} is ${special.label})`;
    const names = this.#nameRules.length > 0 ? "; name rules never cover IP addresses" : "";
    return {
      allowed: false,
      reason: `${where} matches no --allow-host rule${kind}${names}; ${fix}`,
    };
  }

  #decideResolved(
    name: string,
    port: number,
    nameRule: string,
    addresses: readonly string[],
  ): EgressDecision {
    const where = `${name}:${port}`;
    const refused: { ip: IpAddress; why: string }[] = [];
    for (const text of addresses) {
      const ip = parseIp(text);
      if (ip === undefined) continue;
      const special = classifyAddress(ip);
      if (special === undefined) {
        return {
          allowed: true,
          reason: `${where} is allowed by --allow-host ${nameRule}`,
          rule: nameRule,
          address: connectAddress(ip),
        };
      }
      const found = this.#ipRuleFor(ip, port, special);
      if (found.covering !== undefined) {
        return {
          allowed: true,
          reason: `${where} is allowed by --allow-host ${nameRule}, and ${formatIp(ip)} (${special.label}) by --allow-host ${found.covering.text}`,
          rule: `${nameRule} + ${found.covering.text}`,
          address: connectAddress(ip),
        };
      }
      refused.push({ ip, why: special.label });
    }
    const first = refused[0];
    if (first === undefined) {
      return { allowed: false, reason: `${where} resolves to no usable address` };
    }
    const fix = `allow it explicitly with --allow-host ${ruleFor(first.ip, port)}`;
    if (refused.length === 1) {
      return {
        allowed: false,
        reason: `${where} resolves to ${formatIp(first.ip)}, ${first.why}; ${fix}`,
      };
    }
    const list = refused
      .slice(0, 4)
      .map((r) => `${formatIp(r.ip)} (${r.why})`)
      .join(", ");
    const more = refused.length > 4 ? `, and ${refused.length - 4} more` : "";
    return {
      allowed: false,
      reason: `${where} resolves only to refused addresses: ${list}${more}; ${fix}`,
    };
  }
}
