import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { processStartTime, processTableFor } from "../../src/base/process.js";
import { isAlive, isNamed } from "../../src/base/processes.js";
import {
  darwinProcessTable,
  infoArgs,
  type PsResult,
  parsePsInfo,
  parsePsUsage,
  usageArgs,
} from "../../src/base/processes-darwin.js";
import {
  linuxProcessTable,
  parseProcStat,
  parseVmRssBytes,
} from "../../src/base/processes-linux.js";
import { isCorralError } from "../../src/errors.js";
import { FakeProcessTable } from "./fake-processes.js";

/** Captured from Linux 6.x: an executable named "a) (b c", then the same process as a zombie. */
const STAT_ODD_NAME =
  "12452 (a) (b c) S 1 12447 5628 0 -1 4194304 127 0 0 0 0 0 0 0 20 0 1 0 74199 2990080 388 18446744073709551615 94852463050752 94852463068681 140736634047648 0 0 0 0 6 0 1 0 0 17 0 0 0 0 0 0 94852463082768 94852463084032 94853100761088 140736634051304 140736634051317 140736634051317 140736634052590 0\n";
const STAT_ZOMBIE =
  "12452 (a) (b c) Z 1 12447 5628 0 -1 4228108 127 0 0 0 0 0 0 0 20 0 1 0 74199 0 0 18446744073709551615 0 0 0 0 0 0 0 6 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 15\n";
/** A busy QEMU (written in the captured shape): utime 1234 and stime 566 ticks. */
const STAT_QEMU =
  "3301 (qemu-system-x86) S 3299 3298 3298 0 -1 1077936448 52013 0 3 0 1234 566 0 0 20 0 7 0 981234 2260754432 71422 18446744073709551615 1 1 0 0 0 0 0 4096 17122 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
const STATUS_QEMU =
  "Name:\tqemu-system-x86\nUmask:\t0077\nState:\tS (sleeping)\nVmRSS:\t  285688 kB\nThreads:\t7\n";

/**
 * `LC_ALL=C TZ=UTC0 ps -ww -o stat= -o lstart= -o ucomm= -p PID` as macOS prints it, written
 * after Apple's ps source (adv_cmds: keyword.c widths, print.c formats), not captured on a
 * Mac: STAT padded to 4, lstart (strftime %c, C locale) to 28, ucomm (p_comm, 16 bytes) to 16.
 */
const PS_SHIM = "Ss   Tue Dec  2 10:31:07 2025     vmm-shim        \n";
const PS_QEMU = "R    Tue Dec  2 10:31:08 2025     qemu-system-aarc\n";
const PS_SPACES = "S    Mon Nov 24 08:00:00 2025     Google Chrome He\n";
const PS_ZOMBIE = "Z    Tue Dec  2 10:31:09 2025     sleep           \n";
/** `ps -o rss= -o time=`: KiB right-aligned to 6, CPU as "%3ld:%02ld.%02ld" to 9. */
const PS_USAGE = "285688   1:02.37\n";

function fakePs(outputs: Record<string, PsResult>, calls: string[][] = []) {
  return (args: readonly string[]): PsResult => {
    calls.push([...args]);
    const pid = args[args.length - 1]!;
    const kind = args.includes("lstart=") ? "info" : "usage";
    return outputs[`${kind} ${pid}`] ?? { status: 1, stdout: "" };
  };
}

describe("Linux process table", () => {
  it("parses /proc/<pid>/stat: name with spaces and parentheses, state, start time, CPU", () => {
    assert.deepEqual(parseProcStat(STAT_ODD_NAME), {
      name: "a) (b c",
      state: "S",
      startTime: "74199",
      cpuTicks: 0,
    });
    assert.deepEqual(parseProcStat(STAT_QEMU), {
      name: "qemu-system-x86",
      state: "S",
      startTime: "981234",
      cpuTicks: 1800,
    });
    assert.equal(parseProcStat("garbage"), undefined);
    assert.equal(parseProcStat("1 (x) S 1 2"), undefined);
    assert.equal(parseVmRssBytes(STATUS_QEMU), 285688 * 1024);
    assert.equal(parseVmRssBytes("Name:\tkthreadd\n"), 0);
  });

  it("answers from what /proc holds: zombies and missing pids are dead", () => {
    const files: Record<string, string> = {
      "/proc/self/stat": STAT_QEMU,
      "/proc/12452/stat": STAT_ODD_NAME,
      "/proc/3301/stat": STAT_QEMU,
      "/proc/3301/status": STATUS_QEMU,
      "/proc/777/stat": STAT_ZOMBIE,
    };
    const table = linuxProcessTable((path) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(path), { code: "ENOENT" });
      return text;
    });
    assert.deepEqual(table.info(12452), { startTime: "74199", name: "a) (b c" });
    assert.equal(table.info(777), undefined);
    assert.equal(table.info(4242), undefined);
    assert.equal(table.info(0), undefined);
    assert.equal(table.info(-1), undefined);
    assert.deepEqual(table.usage(3301), { cpuMs: 18_000, rssBytes: 285688 * 1024 });
    assert.equal(isAlive(table, 3301, "981234"), true);
    assert.equal(isAlive(table, 3301, "981235"), false, "a reused pid");
    assert.equal(isNamed(table, 3301, "qemu-system-x86_64"), true, "cut at 15 bytes");
  });

  it("refuses to answer without /proc instead of calling everything dead", () => {
    const table = linuxProcessTable((path) => {
      throw Object.assign(new Error(path), { code: "ENOENT" });
    });
    assert.throws(
      () => table.info(1),
      (e) => isCorralError(e, "UNSUPPORTED"),
    );
  });

  it("reads this host's real /proc", () => {
    const table = linuxProcessTable();
    const self = readFileSync("/proc/self/stat", "utf8"); // this process: node
    const info = table.info(process.pid);
    assert.ok(info !== undefined);
    assert.equal(processStartTime(process.pid), info.startTime);
    assert.equal(typeof parseProcStat(self)?.startTime, "string");
    const usage = table.usage(process.pid);
    assert.ok(usage !== undefined && usage.rssBytes > 0 && usage.cpuMs >= 0);
    assert.equal(table.info(2 ** 22 + 1), undefined);
  });

  it("a child that exited and was reaped is dead", async () => {
    const child = spawn("true");
    const pid = await new Promise<number>((resolve) => child.on("exit", () => resolve(child.pid!)));
    assert.equal(linuxProcessTable().info(pid), undefined);
  });
});

describe("macOS process table", () => {
  it("parses ps's start time into epoch seconds and keeps names with spaces", () => {
    assert.deepEqual(parsePsInfo(PS_SHIM), {
      state: "Ss",
      startTime: String(Date.UTC(2025, 11, 2, 10, 31, 7) / 1000),
      name: "vmm-shim",
    });
    assert.equal(parsePsInfo(PS_SPACES)?.name, "Google Chrome He");
    assert.equal(parsePsInfo(PS_QEMU)?.name, "qemu-system-aarc");
    assert.equal(parsePsInfo(PS_ZOMBIE)?.state, "Z");
    assert.equal(parsePsInfo("S    Tue Dec  2 10:31:07 2025                     \n")?.name, "");
    // Another locale's %c, a date that does not exist, two lines: not guessed at.
    assert.equal(parsePsInfo("Ss   Di  2 Dez 10:31:07 2025     vmm-shim\n"), undefined);
    assert.equal(parsePsInfo("Ss   Tue Feb 31 10:31:07 2025     vmm-shim\n"), undefined);
    assert.equal(parsePsInfo(`${PS_SHIM}${PS_QEMU}`), undefined);
    assert.equal(parsePsInfo(""), undefined);
  });

  it("parses rss and CPU time", () => {
    assert.deepEqual(parsePsUsage(PS_USAGE), { rssBytes: 285688 * 1024, cpuMs: 62_370 });
    assert.deepEqual(parsePsUsage("  1024 125:00.01\n"), {
      rssBytes: 1024 * 1024,
      cpuMs: 7_500_010,
    });
    assert.equal(parsePsUsage("ps: time: requires entitlement\n"), undefined);
  });

  it("asks ps about one pid and reads its answer", () => {
    const calls: string[][] = [];
    const table = darwinProcessTable(
      fakePs(
        {
          "info 500": { status: 0, stdout: PS_SHIM },
          "info 501": { status: 0, stdout: PS_QEMU },
          "info 502": { status: 0, stdout: PS_ZOMBIE },
          "usage 501": { status: 0, stdout: PS_USAGE },
        },
        calls,
      ),
    );
    const shimStart = String(Date.UTC(2025, 11, 2, 10, 31, 7) / 1000);
    assert.deepEqual(table.info(500), { startTime: shimStart, name: "vmm-shim" });
    assert.deepEqual(calls[0], infoArgs(500));
    assert.equal(isAlive(table, 500, shimStart), true);
    assert.equal(isAlive(table, 500, String(Number(shimStart) - 1)), false, "a reused pid");
    assert.equal(isNamed(table, 501, "qemu-system-aarch64"), true, "cut at 16 bytes");
    assert.equal(isNamed(table, 501, "qemu-system-aarc"), true);
    assert.equal(isNamed(table, 500, "vhost-device-vsock"), false);
    assert.equal(table.info(502), undefined, "a zombie is dead");
    assert.equal(table.info(503), undefined, "ps exits 1 with no output: no such process");
    assert.equal(table.info(0), undefined);
    assert.ok(!calls.some((args) => args.at(-1) === "0"), "no ps run for pid 0");
    assert.deepEqual(table.usage(501), { rssBytes: 285688 * 1024, cpuMs: 62_370 });
    assert.deepEqual(calls.at(-1), usageArgs(501));
    assert.equal(table.usage(503), undefined);
  });

  it("an answer it cannot read is an error, never a dead process", () => {
    const table = darwinProcessTable(
      fakePs({
        "info 500": { status: 0, stdout: "Ss   Di  2 Dez 10:31:07 2025     vmm-shim\n" },
        "info 501": { status: 1, stdout: "ps: lstart: keyword not found\n" },
      }),
    );
    assert.throws(
      () => table.info(500),
      (e) => isCorralError(e, "INTERNAL"),
    );
    assert.throws(
      () => table.info(501),
      (e) => isCorralError(e, "INTERNAL"),
    );
  });
});

describe("processTableFor", () => {
  it("has a table for Linux and macOS and refuses other hosts explicitly", () => {
    assert.equal(processTableFor("linux").platform, "linux");
    assert.equal(processTableFor("darwin").platform, "darwin");
    for (const platform of ["win32", "freebsd"] as const) {
      assert.throws(
        () => processTableFor(platform),
        (e) => isCorralError(e, "UNSUPPORTED"),
      );
    }
  });

  it("the fake truncates names like the kernel it imitates", () => {
    const darwin = new FakeProcessTable("darwin").add(7, {
      startTime: "1",
      executable: "vhost-device-vsock",
    });
    const linux = new FakeProcessTable("linux").add(7, {
      startTime: "1",
      executable: "vhost-device-vsock",
    });
    assert.equal(darwin.info(7)?.name, "vhost-device-vso");
    assert.equal(linux.info(7)?.name, "vhost-device-vs");
    assert.ok(isNamed(darwin, 7, "vhost-device-vsock") && isNamed(linux, 7, "vhost-device-vsock"));
  });
});
