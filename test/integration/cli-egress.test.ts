/**
 * Egress through the host with --network none: the guest has no NIC, its programs use the
 * agent's proxy on 127.0.0.1:3128, the host's proxy enforces --allow-host. corral (and so its
 * daemon and DNS resolution) runs in a network namespace of this test, where test servers
 * listen and an /etc/hosts of the test's own maps names to them.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createNetns, type TestNetns } from "../support/netns.js";
import { type Sandbox, sandbox } from "./harness.js";

const PUBLIC = "45.33.1.10"; // only inside the test's namespace
const PRIVATE = "10.0.0.5";

const SERVERS = `
import { createServer } from "node:http";
import { createServer as tcp } from "node:net";
const hello = (req, res) => res.end("hello " + req.headers.host + " " + req.url + " via " + req.socket.localAddress + "\\n");
const listen = (server, port, host) => new Promise((r) => server.listen(port, host, r));
await listen(createServer(hello), 80, "${PUBLIC}");
await listen(createServer(hello), 80, "${PRIVATE}");
await listen(createServer(hello), 8080, "127.0.0.1");
await listen(tcp((s) => s.on("data", (d) => s.write("echo " + d))), 443, "${PUBLIC}");
await listen(tcp((s) => s.on("data", (d) => s.write("echo " + d))), 8443, "${PUBLIC}");
process.stdout.write("ready\\n");
`;

let ns: TestNetns;
let box: Sandbox;
let servers: ChildProcess;
const scratch = mkdtempSync(join(tmpdir(), "corral-egress-"));

before(async () => {
  ns = createNetns({
    addresses: [`${PUBLIC}/32`, `${PRIVATE}/32`],
    hosts: {
      "api.allowed.test": PUBLIC,
      "other.denied.test": PUBLIC,
      "internal.allowed.test": PRIVATE,
    },
  });
  const script = join(scratch, "servers.mjs");
  writeFileSync(script, SERVERS);
  servers = ns.spawn([process.execPath, script]);
  const [line] = (await once(servers.stdout!, "data")) as [Buffer];
  assert.equal(line.toString(), "ready\n");
  box = sandbox({ commandPrefix: ns.exec });
  const create = await box.corral([
    "create",
    "--name",
    "eg",
    "--allow-host",
    "api.allowed.test",
    "--allow-host",
    "internal.allowed.test",
    "--allow-host",
    "127.0.0.1:8080",
  ]);
  assert.equal(create.code, 0, create.stderr);
  const start = await box.corral(["start", "eg"]);
  assert.equal(start.code, 0, start.stderr);
});

after(async () => {
  await box?.cleanup();
  servers?.kill();
  ns?.remove();
  rmSync(scratch, { recursive: true, force: true });
});

async function guest(script: string) {
  const r = await box.corral(["exec", "eg", "--", "sh", "-c", script]);
  return { code: r.code, out: r.stdout.toString(), err: r.stderr };
}

/** A raw proxy request from inside the guest (busybox nc), to send what wget would not. */
function raw(request: string): string {
  return `printf '${request.replaceAll("\n", "\\r\\n")}' | timeout 4 nc 127.0.0.1 3128`;
}

describe("egress allowlist through the host (--network none)", () => {
  it("the guest has no NIC, and its programs see the proxy variables", async () => {
    const r = await guest('ls /sys/class/net; echo "$http_proxy $HTTPS_PROXY $no_proxy"');
    assert.equal(
      r.out,
      "lo\nhttp://127.0.0.1:3128 http://127.0.0.1:3128 localhost,127.0.0.1,::1\n",
    );
  });

  it("allows a listed name over plain HTTP (DNS resolved on the host)", async () => {
    const r = await guest("timeout 20 wget -q -O - http://api.allowed.test/hello");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `hello api.allowed.test /hello via ${PUBLIC}\n`);
  });

  it("allows CONNECT to a listed name on 443 and carries the tunnel both ways", async () => {
    const r = await guest(
      raw("CONNECT api.allowed.test:443 HTTP/1.1\nHost: api.allowed.test:443\n\nping\n"),
    );
    assert.match(r.out, /^HTTP\/1\.1 200 /);
    assert.match(r.out, /\r\n\r\necho ping\r\n$/);
  });

  it("denies an unlisted name with 403 and the reason", async () => {
    const r = await guest("timeout 20 wget -q -O - http://other.denied.test/ 2>&1; echo status=$?");
    assert.match(r.out, /403 Forbidden/);
    assert.match(r.out, /status=1/);
    const body = await guest(
      raw("GET http://other.denied.test/ HTTP/1.1\nHost: other.denied.test\n\n"),
    );
    assert.match(body.out, /^HTTP\/1\.1 403 Forbidden/);
    assert.match(body.out, /x-corral-egress: denied/i);
    assert.match(body.out, /corral egress: other\.denied\.test:80 matches no --allow-host rule/);
  });

  it("refuses the usual bypasses", async () => {
    const cases: [string, RegExp][] = [
      // the IP literal of an allowed name
      [raw(`GET http://${PUBLIC}/ HTTP/1.1\nHost: ${PUBLIC}\n\n`), /403 Forbidden/],
      // an allowed name that resolves to a private address
      [
        raw("GET http://internal.allowed.test/ HTTP/1.1\nHost: internal.allowed.test\n\n"),
        /403 Forbidden[\s\S]*private/,
      ],
      // CONNECT to a port the rule does not allow
      [
        raw("CONNECT api.allowed.test:8443 HTTP/1.1\nHost: api.allowed.test:8443\n\n"),
        /403 Forbidden/,
      ],
      // a Host header that names another site than the URI
      [raw("GET http://api.allowed.test/ HTTP/1.1\nHost: other.denied.test\n\n"), /403 Forbidden/],
      // an ambiguous IP literal
      [raw("GET http://127.1:8080/ HTTP/1.1\nHost: 127.1:8080\n\n"), /403 Forbidden/],
    ];
    for (const [script, expected] of cases) {
      const r = await guest(script);
      assert.match(r.out, expected, script);
      assert.doesNotMatch(r.out, /hello /, `${script} reached a server`);
    }
  });

  it("an explicit IP rule opens a loopback address of the host side", async () => {
    // no_proxy names 127.0.0.1 (the guest's own loopback): send this one through the proxy.
    const r = await guest("no_proxy= NO_PROXY= timeout 20 wget -q -O - http://127.0.0.1:8080/lo");
    assert.equal(r.out, "hello 127.0.0.1:8080 /lo via 127.0.0.1\n");
  });

  it("logs every decision: corral logs --egress", async () => {
    const r = await box.corral(["logs", "--egress", "eg"]);
    assert.equal(r.code, 0, r.stderr);
    const log = r.stdout.toString();
    assert.match(
      log,
      / ALLOW GET api\.allowed\.test:80 -> 45\.33\.1\.10 http:\/\/api\.allowed\.test\/hello: /,
    );
    assert.match(log, / ALLOW CONNECT api\.allowed\.test:443 -> 45\.33\.1\.10: /);
    assert.match(log, / DENY {2}GET other\.denied\.test:80 .*matches no --allow-host rule/);
    assert.match(log, / DENY {2}CONNECT api\.allowed\.test:8443/);
    const json = await box.corral(["logs", "--egress", "--json", "eg"]);
    const entries = json.stdout
      .toString()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { vm: string; event: string; bytesDown?: number });
    assert.ok(entries.every((e) => e.vm === "eg"));
    assert.ok(entries.some((e) => e.event === "close" && (e.bytesDown ?? 0) > 0));
  });
});
