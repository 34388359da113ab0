import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ensurePrivateDir, instancePaths } from "../../src/paths/layout.js";
import { parseSpec } from "../../src/spec/schema.js";
import { reconcile } from "../../src/vm/reconcile.js";
import { readRecord, type VmRecord } from "../../src/vm/record.js";
import { FakeProcessTable } from "./fake-processes.js";

function setup(overrides: Partial<VmRecord>) {
  process.env.CORRAL_STATE_DIR = mkdtempSync(join(tmpdir(), "corral-rec-"));
  const paths = instancePaths("box", "0123456789ab");
  mkdirSync(paths.dir, { recursive: true });
  const record: VmRecord = {
    version: 1,
    id: "0123456789ab",
    name: "box",
    spec: parseSpec({ name: "box" }),
    state: "starting",
    image: { name: "i", version: "1", digest: "d", kernel: "/k", initrd: "/i", cmdline: "" },
    guestCid: 3,
    desired: "running",
    createdAt: new Date().toISOString(),
    disks: [],
    ...overrides,
  };
  return { record, paths };
}

describe("reconcile", () => {
  it("leaves a start in progress alone", () => {
    const { record, paths } = setup({ startedAt: new Date().toISOString() });
    assert.equal(reconcile(record, paths).state, "starting");
  });

  it("fails a start that died before launching the VMM", () => {
    const { record, paths } = setup({ startedAt: new Date(Date.now() - 60_000).toISOString() });
    const next = reconcile(record, paths);
    assert.equal(next.state, "failed");
    assert.match(next.reason ?? "", /interrupted before the VMM was launched/);
  });

  it("records a VMM killed by a signal as failed, and a clean exit after stop as stopped", () => {
    const killed = setup({ state: "ready" });
    writeFileSync(
      killed.paths.exitFile,
      JSON.stringify({
        vmm: { exitCode: null, signal: 9 },
        reason: "vmm killed by signal 9",
        atMs: Date.now(),
      }),
    );
    const failed = reconcile(killed.record, killed.paths);
    assert.equal(failed.state, "failed");
    assert.equal(failed.reason, "vmm killed by signal 9");
    const stopping = setup({ state: "stopping", desired: "stopped", reason: "stopped by user" });
    writeFileSync(
      stopping.paths.exitFile,
      JSON.stringify({
        vmm: { exitCode: 0, signal: null },
        reason: "vmm exited with code 0",
        atMs: Date.now(),
      }),
    );
    const stopped = reconcile(stopping.record, stopping.paths);
    assert.equal(stopped.state, "stopped");
    assert.equal(stopped.reason, "stopped by user");
  });
});

describe("reconcile on a Mac-like host (fake process table)", () => {
  const SHIM_PID = 500;
  const VMM_PID = 501;
  const VMM_START = "1764671467"; // what the shim recorded: seconds since the epoch

  /** A VM that was running: shim.json written by its shim, sockets in its run directory. */
  function running() {
    const vm = setup({ state: "ready", startedAt: new Date().toISOString() });
    writeFileSync(
      vm.paths.shimState,
      JSON.stringify({
        shimPid: SHIM_PID,
        vmmPid: VMM_PID,
        sidecarPid: null,
        vmmStartTime: VMM_START,
      }),
    );
    ensurePrivateDir(vm.paths.runDir);
    writeFileSync(vm.paths.vsockSocket, "");
    return vm;
  }

  it("leaves a live VM running and its sockets in place", () => {
    const vm = running();
    const table = new FakeProcessTable("darwin")
      .add(SHIM_PID, { startTime: "1764671466", executable: "vmm-shim" })
      .add(VMM_PID, { startTime: VMM_START, executable: "qemu-system-aarch64" });
    try {
      assert.equal(reconcile(vm.record, vm.paths, table).state, "ready");
      assert.ok(existsSync(vm.paths.vsockSocket), "the run directory was kept");
      assert.deepEqual(table.signals, []);
    } finally {
      rmSync(vm.paths.runDir, { recursive: true, force: true });
    }
  });

  it("fails a VM whose VMM and shim are gone, and removes its sockets", () => {
    const vm = running();
    const table = new FakeProcessTable("darwin");
    const next = reconcile(vm.record, vm.paths, table);
    assert.equal(next.state, "failed");
    assert.match(next.reason ?? "", /shim was killed/);
    assert.equal(readRecord(vm.paths.config, "box").state, "failed");
    assert.equal(existsSync(vm.paths.runDir), false);
    assert.deepEqual(table.signals, []);
  });

  it("waits for a live shim to record how its VMM ended", () => {
    const vm = running();
    const table = new FakeProcessTable("darwin").add(SHIM_PID, {
      startTime: "1764671466",
      executable: "vmm-shim",
    });
    try {
      assert.equal(reconcile(vm.record, vm.paths, table).state, "ready");
    } finally {
      rmSync(vm.paths.runDir, { recursive: true, force: true });
    }
  });

  it("does not signal processes that reused the recorded pids", () => {
    const vm = running();
    writeFileSync(
      vm.paths.shimState,
      JSON.stringify({
        shimPid: SHIM_PID,
        vmmPid: VMM_PID,
        sidecarPid: 502,
        sidecarStartTime: "1764671467",
        vmmStartTime: VMM_START,
      }),
    );
    // All three pids run again, as other programs (or a later VMM: another start time).
    const table = new FakeProcessTable("darwin")
      .add(SHIM_PID, { startTime: "1764680000", executable: "zsh" })
      .add(VMM_PID, { startTime: "1764680001", executable: "qemu-system-aarch64" })
      .add(502, { startTime: "1764680002", executable: "Google Chrome Helper" });
    const next = reconcile(vm.record, vm.paths, table);
    assert.equal(next.state, "failed");
    assert.deepEqual(table.signals, []);
    assert.equal(existsSync(vm.paths.runDir), false);
  });

  it("kills what is still the VM's own after its VMM exit was recorded", () => {
    const vm = running();
    writeFileSync(
      vm.paths.shimState,
      JSON.stringify({
        shimPid: SHIM_PID,
        vmmPid: VMM_PID,
        sidecarPid: 502,
        sidecarStartTime: "1764671466",
        vmmStartTime: VMM_START,
      }),
    );
    writeFileSync(
      vm.paths.exitFile,
      JSON.stringify({ vmm: null, reason: "vsock sidecar exited with code 1", atMs: Date.now() }),
    );
    const table = new FakeProcessTable("darwin")
      .add(SHIM_PID, { startTime: "1764671466", executable: "vmm-shim" })
      .add(VMM_PID, { startTime: VMM_START, executable: "qemu-system-aarch64" })
      // Any executable: the sidecar is known by its start time, not its backend's name.
      .add(502, { startTime: "1764671466", executable: "some-sidecar" });
    assert.equal(reconcile(vm.record, vm.paths, table).state, "failed");
    assert.deepEqual(
      table.signals.map((s) => s.pid),
      [VMM_PID, 502, SHIM_PID],
    );
  });

  it("gives up instead of failing VMs when liveness is unknown", () => {
    const vm = running();
    const table = new FakeProcessTable("darwin");
    table.onInfo = () => {
      throw new Error("ps: not available");
    };
    try {
      assert.throws(() => reconcile(vm.record, vm.paths, table), /ps: not available/);
      assert.equal(existsSync(vm.paths.config), false, "no record written");
      assert.ok(existsSync(vm.paths.vsockSocket));
    } finally {
      rmSync(vm.paths.runDir, { recursive: true, force: true });
    }
  });
});
