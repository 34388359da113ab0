/**
 * `--allow-host` rules: the egress allowlist of a VM (docs/egress.md).
 *
 *   NAME[:PORTS]           api.example.com:443      exactly that name
 *   *.SUFFIX[:PORTS]       *.npmjs.org              any subdomain at any depth, not the apex
 *   *[:PORTS]              *                        any name (IP literals need an IP rule)
 *   IPV4[/LEN][:PORTS]     10.1.2.0/24:80           an address or a CIDR block
 *   [IPV6[/LEN]][:PORTS]   [::1]:8080, [fd00::/8]:*
 *
 * PORTS is `N`, `N-M`, `*` (any) or a comma list of `N` / `N-M`; none means 80,443.
 * A rule is plain JSON (it is stored in the VM's record): `ruleToString` and
 * `parseAllowRule` round-trip it, `ruleFromJson` validates a stored one.
 *
 * The strict IP address parsing the policy shares is in ip.ts.
 */
import { CorralError } from "../errors.js";
import {
  bitsOf,
  formatIp,
  looksLikeIPv4,
  parseIPv4Loose,
  parseIPv4Strict,
  parseIPv6,
} from "./ip.js";

export interface PortRange {
  from: number;
  to: number;
}

export type AllowRule =
  | { kind: "name"; name: string; ports: PortRange[] }
  /** `*.SUFFIX`: `suffix` is stored without the `*.`. */
  | { kind: "suffix"; suffix: string; ports: PortRange[] }
  | { kind: "any-name"; ports: PortRange[] }
  /** `address` is the canonical network address; `prefix` 32 / 128 for a single address. */
  | { kind: "ip"; family: 4 | 6; address: string; prefix: number; ports: PortRange[] };

/** The JSON stored in a VM's record: the rule itself, which holds only plain data. */
export type AllowRuleJson = AllowRule;

export const DEFAULT_PORTS: readonly PortRange[] = Object.freeze([
  { from: 80, to: 80 },
  { from: 443, to: 443 },
]);
const ANY_PORT: PortRange = { from: 1, to: 65535 };

// ---------------------------------------------------------------------------------------------
// Names

/**
 * What is wrong with a (lowercased, trailing-dot-free) DNS name, or undefined when it is a
 * valid one: ASCII letters, digits, '-' and '_', labels of 1-63 characters not starting or
 * ending with '-', at most 253 characters, and not numeric in its last label.
 */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "the name is empty";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: checking for non-ASCII
  if (/[^\x00-\x7f]/.test(name)) return "the name is not ASCII";
  if (name.length > 253) return "the name is longer than 253 characters";
  for (const label of name.split(".")) {
    if (label === "") return "the name has an empty label";
    if (label.length > 63) return `the label "${label}" is longer than 63 characters`;
    if (!/^[a-z0-9_-]+$/.test(label))
      return `the label "${label}" has characters other than a-z, 0-9, '-' and '_'`;
    if (label.startsWith("-") || label.endsWith("-")) {
      return `the label "${label}" starts or ends with '-'`;
    }
  }
  if (looksLikeIPv4(name)) return "the last label is numeric, so it would be read as an IP address";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Rules

const EXAMPLES = "e.g. api.example.com:443, '*.npmjs.org', 10.1.2.0/24:80 or '[::1]:8080'";

function invalid(field: string, raw: string, problem: string, hint: string): CorralError {
  return new CorralError("INVALID_ARGUMENT", `${field} "${raw}": ${problem}`, {
    hint,
    details: { field, value: raw, problem },
  });
}

function parsePorts(text: string, fail: (problem: string, hint: string) => never): PortRange[] {
  const portHint =
    "ports are N, N-M or * (any), from 1 to 65535, e.g. api.example.com:443 or api.example.com:8000-8099";
  if (text === "*") return [{ ...ANY_PORT }];
  if (text === "") fail("the port is empty", portHint);
  const ranges: PortRange[] = [];
  for (const item of text.split(",")) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
    if (m === null) fail(`"${item}" is not a port or port range`, portHint);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (const port of [from, to]) {
      if (port < 1 || port > 65535) fail(`port ${port} is out of range (1-65535)`, portHint);
    }
    if (from > to) fail(`the port range ${item} is reversed`, `write it as ${to}-${from}`);
    ranges.push({ from, to });
  }
  return ranges;
}

function sameRanges(a: readonly PortRange[], b: readonly PortRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.from === b[i]!.from && r.to === b[i]!.to);
}

export function portsToString(ports: readonly PortRange[]): string {
  if (ports.length === 1 && ports[0]!.from === 1 && ports[0]!.to === 65535) return "*";
  return ports.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(",");
}

export function portAllowed(ports: readonly PortRange[], port: number): boolean {
  return ports.some((r) => port >= r.from && port <= r.to);
}

function parseIpRule(
  family: 4 | 6,
  body: string,
  ports: PortRange[],
  fail: (problem: string, hint: string) => never,
  /** The rule text suggested for an address and a prefix text ("" or "/24"). */
  format: (address: string, prefixText: string) => string,
): AllowRule {
  const slash = body.indexOf("/");
  const addressText = slash < 0 ? body : body.slice(0, slash);
  const bits = bitsOf(family);
  const value = family === 4 ? parseIPv4Strict(addressText) : parseIPv6(addressText);
  if (value === undefined) {
    if (family === 4) {
      const loose = parseIPv4Loose(addressText);
      if (loose !== undefined) {
        const canonical = formatIp({ family: 4, value: loose });
        fail(
          `"${addressText}" is an ambiguous IPv4 form (octal, hex or shortened)`,
          `write the dotted-decimal form: ${format(canonical, slash < 0 ? "" : body.slice(slash))}`,
        );
      }
      fail(`"${addressText}" is not an IPv4 address`, `write four decimal octets, ${EXAMPLES}`);
    }
    fail(
      `"${addressText}" is not an IPv6 address`,
      "write a valid IPv6 address without a zone (%eth0), e.g. '[2001:db8::1]:443' or '[fd00::/8]:*'",
    );
  }
  let prefix = bits;
  if (slash >= 0) {
    const lengthText = body.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > bits) {
      fail(
        `the prefix length "/${lengthText}" is not between 0 and ${bits}`,
        `write a CIDR block, e.g. ${family === 4 ? "10.1.2.0/24:80" : "'[fd00::/8]:443'"}`,
      );
    }
    prefix = Number(lengthText);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    if ((value & hostMask) !== 0n) {
      const network = formatIp({ family, value: value & ~hostMask & ((1n << BigInt(bits)) - 1n) });
      fail(
        `${addressText}/${prefix} has host bits set`,
        `write the network address: ${format(network, `/${prefix}`)}`,
      );
    }
  }
  return { kind: "ip", family, address: formatIp({ family, value }), prefix, ports };
}

/**
 * Parses one `--allow-host` value. Throws CorralError("INVALID_ARGUMENT") naming `field`,
 * what is wrong, and a hint with an example.
 */
export function parseAllowRule(raw: string, field = "--allow-host"): AllowRule {
  const fail = (problem: string, hint: string): never => {
    throw invalid(field, raw, problem, hint);
  };
  const text = raw.trim();
  if (text === "") fail("the rule is empty", `write a host, ${EXAMPLES}`);
  if (/\s/.test(text))
    fail("the rule contains whitespace", `write one host per ${field}, ${EXAMPLES}`);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme !== null) {
    const rest = text.slice(scheme[0].length).replace(/\/.*$/, "");
    const port = scheme[1]!.toLowerCase() === "http" ? "80" : "443";
    fail(
      "a rule is a host, not a URL",
      `drop the scheme and path, e.g. ${field} ${rest.includes(":") ? rest : `${rest}:${port}`}`,
    );
  }

  // Bracketed IPv6: [ADDR[/LEN]][:PORTS]
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) fail("the '[' has no matching ']'", "write IPv6 rules as '[2001:db8::1]:443'");
    const after = text.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) {
      fail(`unexpected "${after}" after ']'`, "write IPv6 rules as '[2001:db8::1]:443'");
    }
    const ports =
      after === "" ? DEFAULT_PORTS.map((r) => ({ ...r })) : parsePorts(after.slice(1), fail);
    return parseIpRule(6, text.slice(1, close), ports, fail, (a, p) => `'[${a}${p}]${after}'`);
  }
  if ((text.match(/:/g) ?? []).length > 1) {
    fail(
      "an IPv6 address must be in brackets",
      `write it as '[${text}]' or with a port, e.g. '[::1]:8080'`,
    );
  }

  const colon = text.indexOf(":");
  const hostText = colon < 0 ? text : text.slice(0, colon);
  const portText = colon < 0 ? undefined : text.slice(colon + 1);
  const ports =
    portText === undefined ? DEFAULT_PORTS.map((r) => ({ ...r })) : parsePorts(portText, fail);
  const portSuffix = portText === undefined ? "" : `:${portText}`;

  if (hostText.includes("/") || /^[\d.]+$/.test(hostText) || looksLikeIPv4(hostText)) {
    if (hostText.includes("/") && !/^[0-9a-fx.]+\/.*$/i.test(hostText)) {
      fail("only IP addresses take a /LEN prefix", `write a CIDR block, e.g. 10.1.2.0/24:80`);
    }
    return parseIpRule(4, hostText, ports, fail, (a, p) => `${a}${p}${portSuffix}`);
  }

  // biome-ignore lint/suspicious/noControlCharactersInRegex: checking for non-ASCII
  if (/[^\x00-\x7f]/.test(hostText)) {
    fail(
      "the name is not ASCII",
      `write internationalized names in punycode (IDNA), e.g. xn--bcher-kva.example for bücher.example`,
    );
  }
  let name = hostText.toLowerCase();
  if (name.endsWith(".") && name !== ".") name = name.slice(0, -1);
  if (name === "*") return { kind: "any-name", ports };
  if (name.includes("*")) {
    if (!name.startsWith("*.") || name.slice(2).includes("*")) {
      fail(
        "a wildcard must be the whole first label",
        `write '*.example.com' (any subdomain of example.com) or '*' (any name)`,
      );
    }
    const suffix = name.slice(2);
    const problem = nameProblem(suffix);
    if (problem !== undefined) fail(problem, `write a name, ${EXAMPLES}`);
    return { kind: "suffix", suffix, ports };
  }
  const problem = nameProblem(name);
  if (problem !== undefined) fail(problem, `write a name, ${EXAMPLES}`);
  return { kind: "name", name, ports };
}

export function parseAllowRules(list: readonly string[], field = "--allow-host"): AllowRule[] {
  return list.map((raw) => parseAllowRule(raw, field));
}

/** The canonical text of a rule; `parseAllowRule(ruleToString(r))` equals `r`. */
export function ruleToString(rule: AllowRule): string {
  const ports = sameRanges(rule.ports, DEFAULT_PORTS) ? "" : `:${portsToString(rule.ports)}`;
  switch (rule.kind) {
    case "name":
      return `${rule.name}${ports}`;
    case "suffix":
      return `*.${rule.suffix}${ports}`;
    case "any-name":
      return `*${ports}`;
    case "ip": {
      const cidr =
        rule.prefix === bitsOf(rule.family) ? rule.address : `${rule.address}/${rule.prefix}`;
      return rule.family === 4 ? `${cidr}${ports}` : `[${cidr}]${ports}`;
    }
  }
}

/** A deep copy that is safe to JSON.stringify (a rule already is; this documents it). */
export function ruleToJson(rule: AllowRule): AllowRuleJson {
  return JSON.parse(JSON.stringify(rule)) as AllowRuleJson;
}

/**
 * Validates a rule read back from JSON: it must be exactly what `parseAllowRule` produces
 * for its own `ruleToString`. Throws CorralError("INVALID_ARGUMENT") otherwise.
 */
export function ruleFromJson(value: unknown, field = "allowHosts"): AllowRule {
  const fail = (): never => {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `${field}: ${JSON.stringify(value)} is not an egress rule`,
      {
        hint: "egress rules are written with --allow-host, e.g. api.example.com:443",
        details: { field },
      },
    );
  };
  if (typeof value !== "object" || value === null) return fail();
  const v = value as Record<string, unknown>;
  const ports = v.ports;
  if (
    !Array.isArray(ports) ||
    ports.length === 0 ||
    !ports.every(
      (r) =>
        typeof r === "object" &&
        r !== null &&
        Number.isInteger((r as PortRange).from) &&
        Number.isInteger((r as PortRange).to),
    )
  ) {
    return fail();
  }
  const text = (() => {
    const p = ports as PortRange[];
    if (v.kind === "name" && typeof v.name === "string")
      return ruleToString({ kind: "name", name: v.name, ports: p });
    if (v.kind === "suffix" && typeof v.suffix === "string") {
      return ruleToString({ kind: "suffix", suffix: v.suffix, ports: p });
    }
    if (v.kind === "any-name") return ruleToString({ kind: "any-name", ports: p });
    if (
      v.kind === "ip" &&
      (v.family === 4 || v.family === 6) &&
      typeof v.address === "string" &&
      Number.isInteger(v.prefix)
    ) {
      return ruleToString({
        kind: "ip",
        family: v.family,
        address: v.address,
        prefix: v.prefix as number,
        ports: p,
      });
    }
    return fail();
  })();
  let parsed: AllowRule;
  try {
    parsed = parseAllowRule(text, field);
  } catch (err) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `${field}: ${JSON.stringify(value)} is not a valid egress rule`,
      {
        hint: "egress rules are written with --allow-host, e.g. api.example.com:443",
        cause: err,
        details: { field },
      },
    );
  }
  if (
    ruleToString(parsed) !== text ||
    JSON.stringify(ruleToJson(parsed)) !== JSON.stringify(canonicalOrder(v, parsed))
  ) {
    return fail();
  }
  return parsed;
}

/** `v` with `parsed`'s key order, so the comparison above ignores key order only. */
function canonicalOrder(v: Record<string, unknown>, parsed: AllowRule): unknown {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(parsed)) {
    out[key] =
      key === "ports" ? (v.ports as PortRange[]).map((r) => ({ from: r.from, to: r.to })) : v[key];
  }
  if (Object.keys(v).length !== Object.keys(parsed).length) out.__extra = true;
  return out;
}
