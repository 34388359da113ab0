import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { sandbox } from "./harness.js";

const box = sandbox();
let server: Server;
let port: number;

before(async () => {
  server = createServer((req, res) => res.end(`hello from the host, ${req.url}\n`));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
after(async () => {
  await box.cleanup();
  await new Promise((resolve) => server.close(resolve));
});

describe("network modes", () => {
  it("none (the default): the guest has no interface but lo", async () => {
    const r = await box.corral(["run", "--rm", "--", "ls", "/sys/class/net"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "lo\n");
  });

  it("nat: the guest gets an address by DHCP and reaches a host server at 10.0.2.2", async () => {
    const r = await box.corral([
      "run",
      "--rm",
      "--network",
      "nat",
      "--mac",
      "02:aa:bb:cc:dd:ee",
      "--",
      "sh",
      "-c",
      `cat /sys/class/net/eth0/address; ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; timeout 20 wget -q -O - http://10.0.2.2:${port}/probe`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [mac, inet, body] = r.stdout.toString().split("\n");
    assert.equal(mac, "02:aa:bb:cc:dd:ee");
    assert.match(inet ?? "", /^inet 10\.0\.2\.\d+$/);
    assert.equal(body, "hello from the host, /probe");
  });

  it("rejects modes that do not exist and bad MACs, naming the flag", async () => {
    const mode = await box.corral(["create", "--name", "n1", "--network", "bridge"]);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /network: /);
    const mac = await box.corral(["create", "--name", "n2", "--mac", "01:00:00:00:00:01"]);
    assert.equal(mac.code, 2);
    assert.match(mac.stderr, /mac: a MAC must be unicast/);
  });
});
