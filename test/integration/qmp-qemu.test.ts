/**
 * The QMP client against a real QEMU. With -S the machine never runs, so no kernel is needed.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isCorralError } from "../../src/errors.js";
import { QmpClient } from "../../src/protocols/qmp/client.js";

let dir: string;
let qemu: ChildProcess | undefined;
let exited: Promise<number | null>;

async function waitForSocket(path: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (existsSync(path)) return;
    await sleep(10);
  }
  throw new Error(`QEMU did not create ${path}`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "corral-qmpi-"));
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
      assert.ok(isCorralError(err, "QMP"));
      assert.equal(err.details?.class, "CommandNotFound");
      assert.equal(err.details?.command, "corral-bogus");
      return true;
    });
  });

  test("quit closes the connection and QEMU exits", async () => {
    await qmp.execute("quit");
    await qmp.closed;
    assert.ok(isCorralError(qmp.closeError, "QMP"));
    assert.equal(await exited, 0);
    await assert.rejects(qmp.execute("query-status"), /QEMU closed the QMP connection/);
  });
});
