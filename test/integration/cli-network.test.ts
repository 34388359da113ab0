import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
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

  it("switch: VMs on one switch reach each other, a VM on another switch does not", async () => {
    for (const [name, sw] of [
      ["sw-a1", "lab"],
      ["sw-a2", "lab"],
      ["sw-b1", "other"],
    ] as const) {
      const r = await box.corral(["create", "--name", name, "--network", `switch:${sw}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const start = await box.corral(["start", "sw-a1", "sw-a2", "sw-b1"]);
    assert.equal(start.code, 0, start.stderr);
    const ipOf = async (name: string) =>
      JSON.parse((await box.corral(["inspect", name])).stdout.toString()).guestIp as string;
    const [a1, a2, b1] = [await ipOf("sw-a1"), await ipOf("sw-a2"), await ipOf("sw-b1")];
    assert.equal(a1, "10.213.0.2/24");
    assert.equal(a2, "10.213.0.3/24", "corral gives each VM on a switch its own address");
    assert.equal(b1, "10.213.0.2/24", "another switch is another segment");
    const ping = (from: string, to: string) =>
      box.corral(["exec", from, "--", "ping", "-c", "2", "-W", "3", to.split("/")[0]!]);
    const same = await ping("sw-a2", a1);
    assert.equal(same.code, 0, `${same.stdout}${same.stderr}`);
    assert.match(same.stdout.toString(), /2 packets received/);
    const across = await ping("sw-b1", a2);
    assert.notEqual(across.code, 0, "sw-b1 must not reach sw-a2 on another switch");
    assert.match(across.stdout.toString(), /0 packets received/);
    const status = JSON.parse((await box.corral(["daemon", "status", "--json"])).stdout.toString());
    assert.deepEqual(
      status.vms.map((vm: { name: string; switch: string }) => `${vm.name}:${vm.switch}`).sort(),
      ["sw-a1:lab", "sw-a2:lab", "sw-b1:other"],
    );
    assert.equal((await box.corral(["rm", "-f", "sw-a1", "sw-a2", "sw-b1"])).code, 0);
  });

  it("tap: corral creates the device (root), the guest reaches the host on it, stop removes it", async () => {
    const tap = `crl${process.pid % 100000}`;
    const create = await box.corral([
      "create",
      "--name",
      "tapvm",
      "--network",
      `tap:${tap}`,
      "--ip",
      "10.77.0.2/24",
    ]);
    assert.equal(create.code, 0, create.stderr);
    assert.equal((await box.corral(["start", "tapvm"])).code, 0);
    assert.ok(existsSync(`/sys/class/net/${tap}`), "the TAP device exists while the VM runs");
    execFileSync("ip", ["addr", "add", "10.77.0.1/24", "dev", tap]);
    const r = await box.corral(["exec", "tapvm", "--", "ping", "-c", "2", "-W", "3", "10.77.0.1"]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    assert.equal((await box.corral(["stop", "tapvm"])).code, 0);
    assert.ok(!existsSync(`/sys/class/net/${tap}`), "corral removed the TAP device it created");
    assert.equal((await box.corral(["rm", "tapvm"])).code, 0);
  });

  it("rejects modes that do not exist and bad MACs, naming the flag", async () => {
    const mode = await box.corral(["create", "--name", "n1", "--network", "bridge"]);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /network \(--network\): "bridge" is not a network mode/);
    assert.match(mode.stderr, /hint: use one of none \| nat \| tap:IFACE \| switch:NAME/);
    const ip = await box.corral(["create", "--name", "n3", "--ip", "10.0.0.2/24"]);
    assert.equal(ip.code, 2);
    assert.match(ip.stderr, /ip \(--ip\): a VM without a NIC/);
    const sw = await box.corral(["create", "--name", "n4", "--network", "switch:Bad Name"]);
    assert.equal(sw.code, 2);
    assert.match(sw.stderr, /a switch name is lowercase/);
    const mac = await box.corral(["create", "--name", "n2", "--mac", "01:00:00:00:00:01"]);
    assert.equal(mac.code, 2);
    assert.match(mac.stderr, /mac \(--mac\): a MAC must be unicast/);
  });
});
