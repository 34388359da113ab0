/**
 * The QMP client (and the vmm shim) against a real QEMU. With -S the machine never runs, so
 * no kernel is needed. One QEMU at a time.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { QmpClient } from "../../src/drivers/qemu/qmp.js";
import { isCorralError } from "../../src/errors.js";
import { buildVmmShim } from "../../src/host/vmm-shim-binary.js";

let dir: string;
let qemu: ChildProcess | undefined;
let exited: Promise<number | null>;
const shimPids: number[] = [];

async function waitForSocket(path: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (existsSync(path)) return;
    await sleep(10);
  }
  throw new Error(`QEMU did not create ${path}`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "corral-qmpi-"));
  process.env.CORRAL_CACHE_DIR ??= join(dir, "cache");
  const sock = join(dir, "qmp.sock");
  qemu = spawn(
    "qemu-system-x86_64",
    [
      "-machine",
      "q35,accel=tcg",
      "-nodefaults",
      "-display",
      "none",
      "-S",
      "-qmp",
      `unix:${sock},server=on,wait=off`,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  exited = new Promise((resolve) => qemu?.once("exit", (code) => resolve(code)));
  await waitForSocket(sock);
});

after(async () => {
  for (const pid of shimPids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  if (qemu !== undefined && qemu.exitCode === null && qemu.signalCode === null) {
    qemu.kill("SIGKILL");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("QmpClient against qemu-system-x86_64", () => {
  let qmp: QmpClient;

  test("connects and negotiates", async (t) => {
    const t0 = performance.now();
    qmp = await QmpClient.connect(join(dir, "qmp.sock"), { timeoutMs: 10_000 });
    const ms = performance.now() - t0;
    assert.ok(qmp.version.major >= 7);
    t.diagnostic(`connect + qmp_capabilities: ${ms.toFixed(2)} ms`);
  });

  test("query-version matches the greeting", async () => {
    const v = await qmp.execute<{ qemu: { major: number; minor: number; micro: number } }>(
      "query-version",
    );
    assert.equal(v.qemu.major, qmp.version.major);
    assert.equal(v.qemu.minor, qmp.version.minor);
    assert.equal(v.qemu.micro, qmp.version.micro);
  });

  test("query-status, cont and stop with their events", async () => {
    const s0 = await qmp.execute<{ status: string; running: boolean }>("query-status");
    assert.equal(s0.status, "prelaunch");
    assert.equal(s0.running, false);

    const resumed = qmp.waitForEvent("RESUME", { timeoutMs: 5000 });
    await qmp.execute("cont");
    await resumed;
    const s1 = await qmp.execute<{ status: string; running: boolean }>("query-status");
    assert.equal(s1.running, true);

    const stopped = qmp.waitForEvent("STOP", { timeoutMs: 5000 });
    await qmp.execute("stop");
    await stopped;
    const s2 = await qmp.execute<{ status: string }>("query-status");
    assert.equal(s2.status, "paused");
  });

  test("concurrent commands all get their own replies", async () => {
    const [a, b, c] = await Promise.all([
      qmp.execute<{ status: string }>("query-status"),
      qmp.execute<{ qemu: { major: number } }>("query-version"),
      qmp.execute<{ name?: string }>("query-name"),
    ]);
    assert.equal(a.status, "paused");
    assert.equal(b.qemu.major, qmp.version.major);
    assert.deepEqual(c, {});
  });

  test("a bogus command is a QMP error with CommandNotFound", async () => {
    await assert.rejects(qmp.execute("corral-bogus"), (err: unknown) => {
      assert.ok(isCorralError(err, "VMM_CONTROL"));
      assert.equal(err.details?.class, "CommandNotFound");
      assert.equal(err.details?.command, "corral-bogus");
      return true;
    });
  });

  test("quit closes the connection and QEMU exits", async () => {
    await qmp.execute("quit");
    await qmp.closed;
    assert.ok(isCorralError(qmp.closeError, "VMM_CONTROL"));
    assert.equal(await exited, 0);
    await assert.rejects(qmp.execute("query-status"), /QEMU closed the QMP connection/);
  });
});

describe("vmm-shim supervising a real QEMU", () => {
  async function shimQemu(name: string) {
    const shim = await buildVmmShim();
    const d = join(dir, name);
    mkdirSync(d);
    const sock = join(d, "qmp.sock");
    const child = spawn(
      shim,
      [
        "--state-file",
        join(d, "state.json"),
        "--exit-file",
        join(d, "exit.json"),
        "--vmm",
        "qemu-system-x86_64",
        "-machine",
        "q35,accel=tcg",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-qmp",
        `unix:${sock},server=on,wait=off`,
      ],
      { detached: true, stdio: ["ignore", "ignore", "inherit"] },
    );
    const shimExited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    await waitForSocket(join(d, "state.json"));
    const state = JSON.parse(readFileSync(join(d, "state.json"), "utf8")) as {
      vmmPid: number;
    };
    shimPids.push(child.pid!, state.vmmPid);
    await waitForSocket(sock);
    const exit = () =>
      JSON.parse(readFileSync(join(d, "exit.json"), "utf8")) as {
        vmm: { exitCode: number | null; signal: number | null };
        reason: string;
        stopRequested: boolean;
      };
    return { child, shimExited, sock, exit, state };
  }

  test("QMP quit: the shim records a clean exit", async () => {
    const vm = await shimQemu("quit");
    const qmp = await QmpClient.connect(vm.sock);
    await qmp.execute("quit");
    await qmp.closed;
    assert.equal(await vm.shimExited, 0);
    assert.equal(vm.exit().reason, "vmm exited with code 0");
    assert.equal(vm.exit().stopRequested, false);
  });

  test("SIGTERM to the shim stops QEMU through QMP's view too", async () => {
    const vm = await shimQemu("term");
    const qmp = await QmpClient.connect(vm.sock);
    const shutdown = qmp.waitForEvent("SHUTDOWN", { timeoutMs: 10_000 });
    vm.child.kill("SIGTERM");
    const ev = await shutdown;
    assert.equal(ev.data.reason, "host-signal");
    await qmp.closed;
    assert.equal(await vm.shimExited, 0);
    assert.deepEqual(vm.exit().vmm, { exitCode: 0, signal: null });
    assert.equal(vm.exit().stopRequested, true);
  });
});
