/**
 * The driver conformance suite: what every backend must do through corral's lifecycle, as
 * a user sees it (states, exec, stop, kill, a VMM killed behind corral's back, pause,
 * snapshots), with nothing left behind. It runs against the fake driver (unit, seconds) and
 * against QEMU (integration, real VMs); every new backend must pass it too. Parts a backend's
 * feature record says it lacks are asserted to be refused instead.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";

import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Driver } from "../../src/drivers/driver.js";
import { isCorralError } from "../../src/errors.js";
import { runRoot } from "../../src/paths/layout.js";
import { Manager, type VmInfo } from "../../src/vm/manager.js";
import { processesMentioning } from "../support/processes.js";

export interface ConformanceTarget {
  /** Shown in test names. */
  label: string;
  driver: () => Driver;
  /** Sets up state and cache directories (env) and anything the backend needs; returns the state dir. */
  prepare(): Promise<string>;
  /** Removes what prepare made. */
  teardown(): Promise<void>;
  /** A directory inside the guest whose contents live in guest memory (a snapshot must carry it). */
  scratch(vm: VmInfo): string;
  /** Extra spec fields every VM of the suite gets (e.g. a smaller memory size). */
  spec?: Record<string, unknown>;
}

export function conformanceSuite(target: ConformanceTarget): void {
  describe(`driver conformance: ${target.label}`, () => {
    let manager: Manager;
    let stateDir: string;
    let driver: Driver;
    const create = (name: string) =>
      manager.create({ name, backend: driver.name, ...(target.spec ?? {}) });
    const run = async (name: string, argv: string[]) => {
      const proc = await manager.exec(name, { argv });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      proc.stdout.on("data", (c: Buffer) => stdout.push(c));
      proc.stderr.on("data", (c: Buffer) => stderr.push(c));
      const result = await proc.result;
      return {
        exitCode: result.exitCode,
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      };
    };
    /**
     * Nothing of this VM runs any more, and its sockets are gone. Processes get a moment to
     * finish exiting (a guest-side handler whose connection just closed); an orphan stays.
     */
    const nothingLeft = async (vm: VmInfo) => {
      const left = () => [
        ...processesMentioning(vm.paths.runDir),
        ...processesMentioning(vm.paths.dir),
      ];
      for (let i = 0; i < 300 && left().length > 0; i++) await sleep(10);
      assert.deepEqual(left(), [], "processes of the VM's directories");
      assert.equal(existsSync(vm.paths.runDir), false, "the run directory is removed");
    };

    before(async () => {
      stateDir = await target.prepare();
      driver = target.driver();
      manager = new Manager({ driver });
    });
    after(async () => {
      for (const vm of await manager.list()) await manager.remove(vm.name, { force: true });
      for (const snap of manager.listSnapshots()) await manager.removeSnapshot(snap.name);
      const survivors = [...processesMentioning(stateDir), ...processesMentioning(runRoot())];
      await target.teardown();
      assert.deepEqual(survivors, [], "no process of the suite survives it");
    });

    it("creates a stopped VM that runs nothing", async () => {
      const vm = await create("c-create");
      assert.equal(vm.state, "stopped");
      assert.equal(vm.spec.backend, driver.name);
      assert.equal(vm.pids, undefined);
      await manager.remove(vm.name);
      assert.equal(existsSync(vm.paths.dir), false);
    });

    it("starts to ready, runs commands with separate output and exit codes, stops cleanly", async () => {
      await create("c-life");
      const ready = await manager.start("c-life");
      assert.equal(ready.state, "ready");
      assert.ok(ready.pids !== undefined && ready.pids.vmm > 0);
      const echo = await run("c-life", ["sh", "-c", "echo out; echo err >&2; exit 7"]);
      assert.deepEqual(echo, { exitCode: 7, stdout: "out\n", stderr: "err\n" });
      const stopped = await manager.stop("c-life", { timeoutMs: 30_000 });
      assert.equal(stopped.state, "stopped");
      assert.match(stopped.reason ?? "", /shut down cleanly/);
      await nothingLeft(stopped);
      // A stopped VM starts again.
      assert.equal((await manager.start("c-life")).state, "ready");
      assert.equal((await run("c-life", ["true"])).exitCode, 0);
      await manager.remove("c-life", { force: true });
      await nothingLeft(stopped);
      assert.equal(existsSync(stopped.paths.dir), false);
    });

    it("cancels: an aborted exec kills its command, an aborted stop kills the VM at once", async () => {
      await create("c-cancel");
      await manager.start("c-cancel");
      const controller = new AbortController();
      const proc = await manager.exec(
        "c-cancel",
        { argv: ["sleep", "300"] },
        { signal: controller.signal },
      );
      proc.stdout.resume();
      proc.stderr.resume();
      setTimeout(() => controller.abort(), 200);
      await assert.rejects(proc.result, (err) => isCorralError(err) && err.kind === "cancelled");
      assert.equal((await run("c-cancel", ["echo", "alive"])).stdout, "alive\n", "the VM runs on");
      const stop = new AbortController();
      stop.abort();
      const stopped = await manager.stop("c-cancel", { timeoutMs: 60_000, signal: stop.signal });
      assert.equal(stopped.state, "stopped");
      assert.match(stopped.reason ?? "", /killed/);
      await nothingLeft(stopped);
      await assert.rejects(
        manager.snapshot("c-cancel", "never", { signal: stop.signal }),
        (err) => isCorralError(err) && err.kind === "cancelled",
      );
      assert.equal(manager.listSnapshots().length, 0);
      await manager.remove("c-cancel");
    });

    it("refuses commands in a VM that is not ready, saying why", async () => {
      await create("c-refuse");
      await assert.rejects(manager.exec("c-refuse", { argv: ["true"] }), (err) =>
        isCorralError(err, "VM_STATE"),
      );
      await manager.remove("c-refuse");
    });

    it("kills at once, leaving nothing", async () => {
      await create("c-kill");
      await manager.start("c-kill");
      const killed = await manager.kill("c-kill");
      assert.equal(killed.state, "stopped");
      assert.equal(killed.reason, "killed by user");
      await nothingLeft(killed);
      await manager.remove("c-kill");
    });

    it("records a VMM killed behind corral's back as failed, with its resources released", async () => {
      await create("c-crash");
      const ready = await manager.start("c-crash");
      process.kill(ready.pids!.vmm, "SIGKILL");
      let seen: VmInfo = ready;
      for (let i = 0; i < 500 && seen.state !== "failed"; i++) {
        await sleep(10);
        seen = await manager.inspect("c-crash");
      }
      assert.equal(seen.state, "failed");
      assert.match(seen.reason ?? "", /signal 9|killed/i);
      await nothingLeft(seen);
      await assert.rejects(manager.exec("c-crash", { argv: ["true"] }), (err) =>
        isCorralError(err, "VM_STATE"),
      );
      await manager.remove("c-crash");
    });

    it("pauses and resumes, or refuses to when the backend cannot", async () => {
      await create("c-pause");
      await manager.start("c-pause");
      if (!driver.features.pause) {
        await assert.rejects(manager.pause("c-pause"), (err) => isCorralError(err, "UNSUPPORTED"));
      } else {
        assert.equal((await manager.pause("c-pause")).state, "paused");
        await assert.rejects(manager.exec("c-pause", { argv: ["true"] }), (err) =>
          isCorralError(err, "VM_STATE"),
        );
        assert.equal((await manager.resume("c-pause")).state, "ready");
        assert.equal((await run("c-pause", ["echo", "back"])).stdout, "back\n");
      }
      await manager.remove("c-pause", { force: true });
    });

    it("snapshots a running VM and restores its memory into a new VM, or refuses to", async () => {
      await create("c-snap");
      const source = await manager.start("c-snap");
      if (driver.features.snapshots === false) {
        await assert.rejects(manager.snapshot("c-snap", "s1"), (err) =>
          isCorralError(err, "UNSUPPORTED"),
        );
        await manager.remove("c-snap", { force: true });
        return;
      }
      const marker = `m-${process.pid}-${Date.now()}`;
      const scratch = target.scratch(source);
      const wrote = await run("c-snap", [
        "sh",
        "-c",
        `mkdir -p ${scratch} && echo ${marker} > ${scratch}/marker`,
      ]);
      assert.equal(wrote.exitCode, 0, wrote.stderr);
      const meta = await manager.snapshot("c-snap", "s1");
      assert.equal(meta.backend, driver.name);
      assert.ok(meta.state.length > 0);
      // The source runs on.
      assert.equal((await manager.inspect("c-snap")).state, "ready");
      assert.equal((await run("c-snap", ["echo", "still"])).stdout, "still\n");
      // The marker changes in the source after the save; the restore must see the saved one.
      await run("c-snap", ["sh", "-c", `echo later > ${scratch}/marker`]);
      const restored = await manager.restore("s1", { name: "c-restored" });
      assert.equal(restored.state, "ready");
      assert.equal(restored.restoredFrom, "s1");
      const read = await run("c-restored", ["cat", `${target.scratch(restored)}/marker`]);
      assert.equal(read.stdout, `${marker}\n`);
      await assert.rejects(manager.removeSnapshot("s1"), /in use by VM c-restored/);
      await manager.remove("c-restored", { force: true });
      await nothingLeft(restored);
      await manager.removeSnapshot("s1");
      await manager.remove("c-snap", { force: true });
    });

    it("keeps serial output in the VM's log", async () => {
      await create("c-serial");
      await manager.start("c-serial");
      const log = readFileSync(manager.serialLogPath("c-serial"), "utf8");
      assert.ok(log.length > 0, "the guest printed something on its console");
      await manager.remove("c-serial", { force: true });
    });
  });
}
