import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { sandbox } from "./harness.js";

const box = sandbox();
after(() => box.cleanup());

const stats = async (name: string) => {
  const r = await box.corral(["stats", name, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString());
};

describe("stats", () => {
  it("reports vCPU time, host and guest memory, corral's overhead, disk and network I/O", async () => {
    assert.equal(
      (
        await box.corral([
          "create",
          "--name",
          "meter",
          "--memory",
          "256M",
          "--disk",
          "32M",
          "--network",
          "nat",
        ])
      ).code,
      0,
    );
    assert.equal((await box.corral(["start", "meter"])).code, 0);
    const before = await stats("meter");
    assert.ok(before.vmm.cpuMs > 0);
    assert.ok(before.vmm.rssBytes > 32 * 1024 * 1024);
    assert.ok(
      before.overhead.rssBytes > 0 && before.overhead.rssBytes < 32 * 1024 * 1024,
      "shim + sidecar stay small",
    );
    const total = before.guestMemory.totalBytes;
    assert.ok(total > 200 * 1024 * 1024 && total <= 256 * 1024 * 1024, `guest sees ${total} bytes`);
    const write = await box.corral([
      "exec",
      "meter",
      "--",
      "sh",
      "-c",
      "dd if=/dev/zero of=/dev/vda bs=1M count=4 conv=fsync 2>/dev/null",
    ]);
    assert.equal(write.code, 0, write.stderr);
    const afterWrite = await stats("meter");
    const written = afterWrite.disks.reduce(
      (n: number, d: { writtenBytes: number }) => n + d.writtenBytes,
      0,
    );
    assert.ok(written >= 4 * 1024 * 1024, `disk counters saw ${written} bytes written`);
    assert.ok(afterWrite.vmm.cpuMs >= before.vmm.cpuMs);
    // The guest's own interface counters: DHCP already sent and received packets on eth0.
    const eth0 = afterWrite.network.find((n: { interface: string }) => n.interface === "eth0");
    assert.ok(eth0 !== undefined, JSON.stringify(afterWrite.network));
    assert.ok(eth0.txPackets > 0 && eth0.rxBytes > 0, JSON.stringify(eth0));
    const table = await box.corral(["stats", "meter"]);
    assert.match(table.stdout.toString(), /^NAME\s+STATE\s+VCPU TIME/);
    assert.equal((await box.corral(["stop", "meter"])).code, 0);
    const stopped = await box.corral(["stats", "meter"]);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /is stopped/);
    assert.equal((await box.corral(["rm", "meter"])).code, 0);
  });
});
