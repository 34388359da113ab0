import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import {
  type AllowRule,
  classifyAddress,
  EgressPolicy,
  parseAllowRule,
  parseAllowRules,
  parseRequestHost,
  ruleFromJson,
  ruleToString,
} from "../../src/net/egress/index.js";
import { formatIp, parseIp } from "../../src/spec/ip.js";

const policy = (...rules: string[]) => new EgressPolicy(parseAllowRules(rules));

function invalidRule(raw: string, message: RegExp, hint?: RegExp): void {
  assert.throws(
    () => parseAllowRule(raw),
    (err) => {
      assert.ok(isCorralError(err, "INVALID_ARGUMENT"), String(err));
      assert.ok(err.message.startsWith(`--allow-host "${raw}": `), err.message);
      assert.match(err.message, message);
      if (hint !== undefined) assert.match(err.hint ?? "", hint);
      return true;
    },
  );
}

describe("parseAllowRule", () => {
  it("parses every form and writes it back canonically", () => {
    const cases: [string, string][] = [
      ["api.example.com:443", "api.example.com:443"],
      ["API.Example.COM.", "api.example.com"],
      ["*.npmjs.org", "*.npmjs.org"],
      ["*", "*"],
      ["*:*", "*:*"],
      ["10.1.2.0/24:80", "10.1.2.0/24:80"],
      ["127.0.0.1:8080", "127.0.0.1:8080"],
      ["[::1]:8080", "[::1]:8080"],
      ["[FD00::/8]:*", "[fd00::/8]:*"],
      ["[2001:DB8:0:0:1:0:0:1]", "[2001:db8::1:0:0:1]"],
      ["example.org:8000-8099", "example.org:8000-8099"],
      ["example.org:80,443", "example.org"],
      ["10.0.0.5/32:22", "10.0.0.5:22"],
      ["  spaced.example  ", "spaced.example"],
    ];
    for (const [raw, canonical] of cases) {
      const rule = parseAllowRule(raw);
      assert.equal(ruleToString(rule), canonical, raw);
      assert.deepEqual(parseAllowRule(ruleToString(rule)), rule, raw);
    }
  });

  it("defaults to ports 80 and 443; * is any port", () => {
    assert.deepEqual(parseAllowRule("example.com").ports, [
      { from: 80, to: 80 },
      { from: 443, to: 443 },
    ]);
    assert.deepEqual(parseAllowRule("example.com:*").ports, [{ from: 1, to: 65535 }]);
  });

  it("gives the rule shapes stored in the VM record", () => {
    assert.deepEqual(parseAllowRule("*.npmjs.org:443"), {
      kind: "suffix",
      suffix: "npmjs.org",
      ports: [{ from: 443, to: 443 }],
    });
    assert.deepEqual(parseAllowRule("10.1.2.0/24:80"), {
      kind: "ip",
      family: 4,
      address: "10.1.2.0",
      prefix: 24,
      ports: [{ from: 80, to: 80 }],
    });
  });

  it("round-trips through JSON and refuses tampered JSON", () => {
    const rules = parseAllowRules([
      "a.example:443",
      "*.b.example",
      "*",
      "10.0.0.0/8:*",
      "[::1]:1-2",
    ]);
    const back = (JSON.parse(JSON.stringify(rules)) as unknown[]).map((r) => ruleFromJson(r));
    assert.deepEqual(back, rules);
    const bad: unknown[] = [
      null,
      "a.example",
      { kind: "name", name: "A.example", ports: [{ from: 443, to: 443 }] },
      { kind: "name", name: "a.example", ports: [] },
      { kind: "name", name: "a.example", ports: [{ from: 0, to: 1 }] },
      { kind: "ip", family: 4, address: "10.1.2.3", prefix: 24, ports: [{ from: 80, to: 80 }] },
      { kind: "ip", family: 6, address: "10.1.2.0", prefix: 24, ports: [{ from: 80, to: 80 }] },
      { kind: "name", name: "a.example", ports: [{ from: 1, to: 1 }], extra: true },
      { kind: "wat", ports: [{ from: 1, to: 1 }] },
    ];
    for (const value of bad) {
      assert.throws(
        () => ruleFromJson(value),
        (e) => isCorralError(e, "INVALID_ARGUMENT"),
        JSON.stringify(value),
      );
    }
  });

  it("refuses bad rules with what is wrong and how to fix it", () => {
    invalidRule("10.1.2.3/24", /host bits set/, /10\.1\.2\.0\/24/);
    invalidRule("[2001:db8::1/32]:443", /host bits set/, /\[2001:db8::\/32\]:443/);
    invalidRule("10.0.0.0/33", /prefix length/, /10\.1\.2\.0\/24/);
    invalidRule("[::/129]", /prefix length/);
    invalidRule("x.example:0", /port 0 is out of range/, /1 to 65535/);
    invalidRule("x.example:65536", /port 65536/);
    invalidRule("x.example:", /port is empty/);
    invalidRule("x.example:9-1", /reversed/, /1-9/);
    invalidRule("x.example:http", /not a port/);
    invalidRule("foo.*.example", /wildcard must be the whole first label/, /\*\.example\.com/);
    invalidRule("*foo.example", /wildcard/);
    invalidRule("*.*.example", /wildcard/);
    invalidRule("a..example", /empty label/);
    invalidRule("-a.example", /starts or ends with '-'/);
    invalidRule("a$b.example", /characters other than/);
    invalidRule("bücher.example", /not ASCII/, /punycode/);
    invalidRule("https://api.example.com/v1", /not a URL/, /--allow-host api\.example\.com:443/);
    invalidRule("::1", /must be in brackets/, /\[::1\]/);
    invalidRule("[::1", /no matching/);
    invalidRule("[fe80::1%eth0]", /not an IPv6 address/);
    invalidRule("127.1", /ambiguous IPv4/, /127\.0\.0\.1/);
    invalidRule("0x7f.0.0.1:80", /ambiguous IPv4/, /127\.0\.0\.1:80/);
    invalidRule("2130706433", /ambiguous IPv4/, /127\.0\.0\.1/);
    invalidRule("0177.0.0.1", /ambiguous IPv4/);
    invalidRule("256.1.1.1", /not an IPv4 address/);
    invalidRule("example/24", /only IP addresses take a \/LEN/);
    invalidRule("", /empty/);
    invalidRule("a.example b.example", /whitespace/);
    invalidRule(`${"a".repeat(64)}.example`, /longer than 63/);
  });

  it("names the field it was given", () => {
    assert.throws(
      () => parseAllowRule("a..b", "allowHosts[2]"),
      (e) => isCorralError(e) && e.message.startsWith('allowHosts[2] "a..b": '),
    );
  });
});

describe("IP parsing", () => {
  it("formats IPv6 per RFC 5952 and keeps mapped IPv4 readable", () => {
    const cases: [string, string][] = [
      ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["::ffff:7f00:1", "::ffff:127.0.0.1"],
      ["::", "::"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ];
    for (const [input, out] of cases) assert.equal(formatIp(parseIp(input)!), out);
    for (const bad of [
      "1:2:3:4:5:6:7:8:9",
      ":1::",
      "1:::2",
      "12345::",
      "::1.2.3",
      "fe80::1%1",
      "01.2.3.4",
    ]) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  it("classifies special-purpose addresses", () => {
    const special: [string, RegExp][] = [
      ["10.0.0.5", /private/],
      ["172.16.9.1", /private/],
      ["192.168.1.1", /private/],
      ["127.0.0.1", /loopback/],
      ["169.254.169.254", /metadata/],
      ["169.254.1.1", /link-local/],
      ["100.64.0.1", /CGNAT/],
      ["0.0.0.0", /unspecified/],
      ["224.0.0.1", /multicast/],
      ["255.255.255.255", /broadcast/],
      ["192.0.2.1", /documentation/],
      ["198.51.100.7", /documentation/],
      ["203.0.113.9", /documentation/],
      ["198.18.0.1", /benchmarking/],
      ["240.0.0.1", /reserved/],
      ["::", /unspecified/],
      ["::1", /loopback/],
      ["fe80::1", /link-local/],
      ["fd12:3456::1", /unique-local/],
      ["fd00:ec2::254", /metadata/],
      ["ff02::1", /multicast/],
      ["2001:db8::1", /documentation/],
      ["::ffff:127.0.0.1", /loopback address \(IPv4-mapped\)/],
      ["::ffff:169.254.169.254", /metadata address \(IPv4-mapped\)/],
      ["64:ff9b::10.0.0.5", /private address \(NAT64\)/],
      ["2002:7f00:1::", /loopback address \(6to4\)/],
      ["4000::1", /reserved/],
    ];
    for (const [text, label] of special) {
      const found = classifyAddress(parseIp(text)!);
      assert.ok(found !== undefined, text);
      assert.match(found.label, label, text);
    }
    for (const pub of [
      "93.184.216.34",
      "8.8.8.8",
      "2606:4700::1111",
      "::ffff:8.8.8.8",
      "64:ff9b::8.8.8.8",
    ]) {
      assert.equal(classifyAddress(parseIp(pub)!), undefined, pub);
    }
  });
});

describe("parseRequestHost", () => {
  it("normalizes names and recognizes IP literals", () => {
    assert.deepEqual(parseRequestHost("API.Example.COM."), {
      kind: "name",
      name: "api.example.com",
    });
    assert.equal(parseRequestHost("[::1]").kind, "ip");
    assert.equal(parseRequestHost("::1").kind, "ip");
    assert.equal(parseRequestHost("93.184.216.34").kind, "ip");
  });

  it("refuses ambiguous IPv4 forms instead of guessing", () => {
    for (const host of [
      "127.1",
      "0x7f.0.0.1",
      "2130706433",
      "0177.0.0.1",
      "127.0.0.1.",
      "010.0.0.1",
      "1.2.3.0x4",
    ]) {
      const parsed = parseRequestHost(host);
      assert.equal(parsed.kind, "invalid", host);
      assert.match((parsed as { problem: string }).problem, /ambiguous IP literal/, host);
    }
    assert.match(
      (parseRequestHost("127.1") as { problem: string }).problem,
      /read as 127\.0\.0\.1/,
    );
  });
});

describe("EgressPolicy", () => {
  it("denies by default, naming host:port", () => {
    const d = policy().decide({ host: "api.evil.com", port: 443, addresses: ["93.184.216.34"] });
    assert.deepEqual(d, {
      allowed: false,
      reason: "api.evil.com:443 matches no --allow-host rule",
    });
  });

  it("allows an exact name on its ports and connects to the resolved address", () => {
    const p = policy("api.example.com");
    const d = p.decide({ host: "api.example.com", port: 443, addresses: ["93.184.216.34"] });
    assert.equal(d.allowed, true);
    assert.equal(d.address, "93.184.216.34");
    assert.equal(d.rule, "api.example.com");
    assert.match(d.reason, /api\.example\.com:443/);
    assert.equal(
      p.decide({ host: "api.example.com", port: 80, addresses: ["93.184.216.34"] }).allowed,
      true,
    );
    const wrongPort = p.decide({
      host: "api.example.com",
      port: 8443,
      addresses: ["93.184.216.34"],
    });
    assert.equal(wrongPort.allowed, false);
    assert.match(
      wrongPort.reason,
      /^api\.example\.com:8443: port 8443 is not allowed by --allow-host api\.example\.com \(ports 80,443\)/,
    );
    assert.equal(
      p.decide({ host: "other.example.com", port: 443, addresses: ["93.184.216.34"] }).allowed,
      false,
    );
  });

  it("matches uppercase names and trailing dots", () => {
    const p = policy("api.example.com:443");
    for (const host of ["API.EXAMPLE.COM", "api.example.com.", "Api.Example.Com."]) {
      assert.equal(p.decide({ host, port: 443, addresses: ["93.184.216.34"] }).allowed, true, host);
    }
    assert.equal(
      p.decide({ host: "api.example.com..", port: 443, addresses: ["93.184.216.34"] }).allowed,
      false,
    );
  });

  it("*.SUFFIX matches subdomains at any depth but not the apex", () => {
    const p = policy("*.npmjs.org:443");
    const at = (host: string) => p.decide({ host, port: 443, addresses: ["104.16.0.1"] }).allowed;
    assert.equal(at("registry.npmjs.org"), true);
    assert.equal(at("a.b.c.npmjs.org"), true);
    assert.equal(at("npmjs.org"), false);
    assert.equal(at("evilnpmjs.org"), false);
    assert.equal(at("npmjs.org.evil.com"), false);
  });

  it("* matches any name but never an IP literal", () => {
    const p = policy("*:443");
    assert.equal(
      p.decide({ host: "anything.example", port: 443, addresses: ["8.8.8.8"] }).allowed,
      true,
    );
    const ip = p.decide({ host: "8.8.8.8", port: 443, addresses: ["8.8.8.8"] });
    assert.equal(ip.allowed, false);
    assert.match(
      ip.reason,
      /^8\.8\.8\.8:443 matches no --allow-host rule; name rules never cover IP addresses/,
    );
    assert.match(ip.reason, /--allow-host 8\.8\.8\.8:443/);
  });

  it("a name rule never allows an IP literal, an IP rule never a name", () => {
    const byName = policy("example.com:443");
    assert.equal(byName.decide({ host: "93.184.216.34", port: 443, addresses: [] }).allowed, false);
    const byIp = policy("93.184.216.34:443");
    const ip = byIp.decide({ host: "93.184.216.34", port: 443, addresses: [] });
    assert.deepEqual(ip, {
      allowed: true,
      reason: "93.184.216.34:443 is allowed by --allow-host 93.184.216.34:443",
      rule: "93.184.216.34:443",
      address: "93.184.216.34",
    });
    const name = byIp.decide({ host: "example.com", port: 443, addresses: ["93.184.216.34"] });
    assert.equal(name.allowed, false);
    assert.match(name.reason, /matches no --allow-host rule/);
  });

  it("uses the literal, not the addresses given, for IP literals", () => {
    const p = policy("93.184.216.34:443");
    const d = p.decide({ host: "10.0.0.5", port: 443, addresses: ["93.184.216.34"] });
    assert.equal(d.allowed, false);
  });

  it("refuses names resolving to special-purpose addresses unless an IP rule covers them", () => {
    const p = policy("internal.example:443", "loopy.test:*");
    assert.deepEqual(p.decide({ host: "internal.example", port: 443, addresses: ["10.0.0.5"] }), {
      allowed: false,
      reason:
        "internal.example:443 resolves to 10.0.0.5, a private address; allow it explicitly with --allow-host 10.0.0.5:443",
    });
    const loop = p.decide({ host: "loopy.test", port: 8080, addresses: ["127.0.0.1"] });
    assert.match(
      loop.reason,
      /127\.0\.0\.1, a loopback address; allow it explicitly with --allow-host 127\.0\.0\.1:8080/,
    );
    for (const address of [
      "169.254.169.254",
      "100.64.1.1",
      "0.0.0.0",
      "::1",
      "fe80::1",
      "fd00::1",
      "::ffff:10.0.0.5",
      "224.0.0.1",
      "192.0.2.1",
    ]) {
      assert.equal(
        p.decide({ host: "loopy.test", port: 80, addresses: [address] }).allowed,
        false,
        address,
      );
    }

    const explicit = policy("internal.example:443", "10.0.0.5:443");
    const ok = explicit.decide({ host: "internal.example", port: 443, addresses: ["10.0.0.5"] });
    assert.equal(ok.allowed, true);
    assert.equal(ok.address, "10.0.0.5");
    assert.equal(ok.rule, "internal.example:443 + 10.0.0.5:443");
    // The IP rule's port must match too.
    const wrongPort = policy("internal.example:*", "10.0.0.5:443");
    assert.equal(
      wrongPort.decide({ host: "internal.example", port: 22, addresses: ["10.0.0.5"] }).allowed,
      false,
    );
  });

  it("needs an IP rule at least as specific as the special-purpose block", () => {
    const broad = policy("*:*", "0.0.0.0/0:*", "[::/0]:*");
    assert.equal(
      broad.decide({ host: "x.test", port: 80, addresses: ["127.0.0.1"] }).allowed,
      false,
    );
    assert.equal(broad.decide({ host: "x.test", port: 80, addresses: ["::1"] }).allowed, false);
    assert.equal(broad.decide({ host: "8.8.8.8", port: 53, addresses: [] }).allowed, true);
    const literal = broad.decide({ host: "127.0.0.1", port: 22, addresses: [] });
    assert.equal(literal.allowed, false);
    assert.match(
      literal.reason,
      /127\.0\.0\.1 is a loopback address, which --allow-host 0\.0\.0\.0\/0:\* is too broad to cover; allow it with --allow-host 127\.0\.0\.1:22/,
    );

    const privateNet = policy("*:*", "10.0.0.0/8:*", "169.254.0.0/16:*");
    assert.equal(
      privateNet.decide({ host: "x.test", port: 80, addresses: ["10.9.9.9"] }).allowed,
      true,
    );
    assert.equal(
      privateNet.decide({ host: "x.test", port: 80, addresses: ["169.254.1.1"] }).allowed,
      true,
    );
    // Only an exact rule opens the metadata address.
    assert.equal(
      privateNet.decide({ host: "x.test", port: 80, addresses: ["169.254.169.254"] }).allowed,
      false,
    );
    assert.equal(
      policy("169.254.169.254:80").decide({ host: "169.254.169.254", port: 80, addresses: [] })
        .allowed,
      true,
    );
  });

  it("picks the first allowed resolved address", () => {
    const p = policy("multi.test", "10.0.0.5:443");
    const d1 = p.decide({
      host: "multi.test",
      port: 443,
      addresses: ["127.0.0.1", "10.0.0.5", "93.184.216.34"],
    });
    assert.equal(d1.address, "10.0.0.5");
    const d2 = p.decide({ host: "multi.test", port: 80, addresses: ["10.0.0.5", "93.184.216.34"] });
    assert.equal(d2.address, "93.184.216.34");
    const none = p.decide({ host: "multi.test", port: 80, addresses: ["10.0.0.5", "127.0.0.1"] });
    assert.equal(none.allowed, false);
    assert.match(
      none.reason,
      /resolves only to refused addresses: 10\.0\.0\.5 \(a private address\), 127\.0\.0\.1 \(a loopback address\); allow it explicitly with --allow-host 10\.0\.0\.5:80/,
    );
    const empty = p.decide({ host: "multi.test", port: 443, addresses: ["not-an-ip", "127.1"] });
    assert.match(empty.reason, /resolves to no usable address/);
  });

  it("treats IPv4-mapped IPv6 as the IPv4 address", () => {
    const p = policy("mapped.test", "127.0.0.1:443");
    const lit = p.decide({ host: "[::ffff:127.0.0.1]", port: 443, addresses: [] });
    assert.equal(lit.allowed, true);
    assert.equal(lit.address, "127.0.0.1");
    assert.equal(p.decide({ host: "::ffff:127.0.0.1", port: 80, addresses: [] }).allowed, false);
    assert.equal(p.decide({ host: "[::ffff:127.0.0.2]", port: 443, addresses: [] }).allowed, false);
    const resolved = p.decide({ host: "mapped.test", port: 443, addresses: ["::ffff:127.0.0.1"] });
    assert.equal(resolved.address, "127.0.0.1");
    const pub = p.decide({ host: "mapped.test", port: 80, addresses: ["::ffff:93.184.216.34"] });
    assert.equal(pub.address, "93.184.216.34");
    assert.equal(
      policy("*").decide({ host: "x.test", port: 80, addresses: ["::ffff:169.254.169.254"] })
        .allowed,
      false,
    );
    // A v6 rule on the mapped range covers the IPv4 address as well.
    const v6rule = policy("[::ffff:10.0.0.0/104]:*");
    assert.equal(v6rule.decide({ host: "10.1.2.3", port: 1, addresses: [] }).allowed, true);
  });

  it("refuses octal, hex and short IPv4 forms as ambiguous, whatever the rules", () => {
    const p = policy("*:*", "127.0.0.1:*", "0.0.0.0/0:*");
    for (const host of [
      "127.1",
      "0x7f.0.0.1",
      "2130706433",
      "0177.0.0.1",
      "127.0.0.1.",
      "0x7f000001",
    ]) {
      const d = p.decide({ host, port: 80, addresses: ["127.0.0.1"] });
      assert.equal(d.allowed, false, host);
      assert.match(
        d.reason,
        new RegExp(`^${host.replace(/\./g, "\\.")}:80 is refused: it is an ambiguous IP literal`),
      );
    }
  });

  it("handles IPv6 literals and rules", () => {
    const p = policy("[::1]:8080", "[2001:db8::/32]:443", "[2606:4700::/32]:443");
    assert.equal(p.decide({ host: "[::1]", port: 8080, addresses: [] }).allowed, true);
    assert.equal(p.decide({ host: "[::1]", port: 8081, addresses: [] }).allowed, false);
    assert.equal(p.decide({ host: "[0:0:0:0:0:0:0:1]", port: 8080, addresses: [] }).allowed, true);
    // Documentation block, covered by a rule exactly as specific.
    assert.equal(
      p.decide({ host: "[2001:db8::5]", port: 443, addresses: [] }).address,
      "2001:db8::5",
    );
    assert.equal(p.decide({ host: "[2606:4700::1111]", port: 443, addresses: [] }).allowed, true);
    const d = policy().decide({ host: "[fe80::1]", port: 80, addresses: [] });
    assert.match(
      d.reason,
      /^\[fe80::1\]:80 matches no --allow-host rule \(fe80::1 is a link-local address\); allow it with --allow-host '\[fe80::1\]:80'/,
    );
    assert.equal(
      policy("*").decide({ host: "[fe80::1%eth0]", port: 80, addresses: [] }).allowed,
      false,
    );
  });

  it("refuses invalid names and ports", () => {
    const p = policy("*:*");
    for (const host of [
      "bad host",
      "a..b",
      "%65xample.com",
      "",
      "ex$mple.com",
      "bücher.example",
      "a\\@b.com",
    ]) {
      const d = p.decide({ host, port: 80, addresses: ["8.8.8.8"] });
      assert.equal(d.allowed, false, host);
      assert.match(d.reason, /is refused: it is/, host);
    }
    assert.match(p.decide({ host: "bücher.example", port: 80, addresses: [] }).reason, /punycode/);
    for (const port of [0, 65536, 1.5, Number.NaN]) {
      assert.equal(
        p.decide({ host: "x.test", port, addresses: ["8.8.8.8"] }).allowed,
        false,
        String(port),
      );
    }
  });

  it("prechecks without DNS: refused names are never resolved", () => {
    const p = policy("ok.test:443", "10.0.0.5:22");
    assert.deepEqual(p.precheck("OK.test.", 443), { kind: "resolve", name: "ok.test" });
    const denied = p.precheck("evil.test", 443);
    assert.equal(denied.kind, "decided");
    assert.equal(p.precheck("ok.test", 80).kind, "decided");
    const ip = p.precheck("10.0.0.5", 22);
    assert.equal(ip.kind === "decided" && ip.decision.allowed, true);
  });

  it("copies its rules", () => {
    const rules: AllowRule[] = parseAllowRules(["a.test"]);
    const p = new EgressPolicy(rules);
    (rules[0] as { name: string }).name = "b.test";
    assert.equal(p.decide({ host: "a.test", port: 80, addresses: ["8.8.8.8"] }).allowed, true);
  });
});
