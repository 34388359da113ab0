import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { diskCounters } from "../../src/drivers/qemu/counters.js";
import { parseMeminfo, parseNetDev, processUsage } from "../../src/vm/stats.js";

describe("stats parsing", () => {
  it("reads the guest's meminfo and rejects nonsense", () => {
    const good = "MemTotal:         250000 kB\nMemFree:  1 kB\nMemAvailable:     200000 kB\n";
    assert.deepEqual(parseMeminfo(good), {
      totalBytes: 250000 * 1024,
      availableBytes: 200000 * 1024,
      usedBytes: 50000 * 1024,
    });
    assert.equal(parseMeminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n"), undefined);
    assert.equal(parseMeminfo("garbage"), undefined);
    assert.equal(parseMeminfo(`MemTotal: ${"9".repeat(40)} kB\nMemAvailable: 1 kB\n`), undefined);
  });
  it("maps QMP blockstats", () => {
    assert.deepEqual(
      diskCounters([
        {
          qdev: "/machine/peripheral-anon/device[1]/virtio-backend",
          stats: { rd_bytes: 5, wr_bytes: 7, rd_operations: 1, wr_operations: 2 },
        },
        { device: "x" },
      ]),
      [
        {
          device: "/machine/peripheral-anon/device[1]/virtio-backend",
          readBytes: 5,
          writtenBytes: 7,
          readOps: 1,
          writeOps: 2,
        },
      ],
    );
  });
  it("measures a live process and nothing for a dead one", () => {
    const usage = processUsage(process.pid);
    assert.ok(usage !== undefined && usage.rssBytes > 0 && usage.cpuMs >= 0);
    assert.equal(processUsage(2 ** 22 + 1), undefined);
  });
});

describe("parseNetDev", () => {
  const header =
    "Inter-|   Receive                                                |  Transmit\n" +
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";
  it("reads each interface's byte and packet counters, without loopback", () => {
    const text = `${header}    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0: 123456     789    0    0    0     0          0         3    65432     321    0    0    0     0       0          0\n`;
    assert.deepEqual(parseNetDev(text), [
      { interface: "eth0", rxBytes: 123456, rxPackets: 789, txBytes: 65432, txPackets: 321 },
    ]);
  });
  it("skips what the guest garbled instead of trusting it", () => {
    const text = `${header}  eth0: 1 2 3\n  ev!l: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth1: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n`;
    assert.deepEqual(parseNetDev(text), []);
  });
});
