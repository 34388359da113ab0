/**
 * The driver conformance suite against the fake backend, and the lifecycle's failure paths:
 * whichever step of a start fails, every earlier step is undone (no process, socket, service
 * or stray file), and a spec the backend cannot run is refused before anything exists.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive } from "../../src/base/process.js";
import type { Driver, Machine, MachineHost, VmContext } from "../../src/drivers/driver.js";
import { FakeDriver } from "../../src/drivers/fake/driver.js";
import { isCorralError } from "../../src/errors.js";
import { runRoot } from "../../src/paths/layout.js";
import { Manager } from "../../src/vm/manager.js";
import { readRecord } from "../../src/vm/record.js";
import type { HostServices } from "../../src/vm/services.js";
import { readShimState } from "../../src/vm/supervisor.js";
import { conformanceSuite } from "../conformance/suite.js";
import { type FakeHome, fakeHome } from "../support/fake-backend.js";
import { processesMentioning } from "../support/processes.js";

let home: FakeHome | undefined;

conformanceSuite({
  label: "fake",
  driver: () => new FakeDriver(),
  async prepare() {
    home = fakeHome();
    return home.stateDir;
  },
  async teardown() {
    home?.remove();
  },
  scratch: (vm) => join(vm.paths.dir, "ram"),
});

/** A fake whose machine fails at one step. */
class FaultyDriver extends FakeDriver {
  constructor(private readonly fault: "plan" | "boot" | "vmm-exits") {
    super();
  }

  override open(vm: VmContext, host: MachineHost): Machine {
    const machine = super.open(vm, host);
    const fault = this.fault;
    return Object.assign(Object.create(machine) as Machine, {
      async plan(mode: Parameters<Machine["plan"]>[0]) {
        if (fault === "plan") throw new Error("injected: plan failed");
        const plan = await machine.plan(mode);
        if (fault === "vmm-exits")
          plan.vmm.argv = ["/bin/sh", "-c", "echo the vmm gave up >&2; exit 3"];
        return plan;
      },
      async boot(mode: Parameters<Machine["boot"]>[0], signal?: AbortSignal) {
        if (fault === "boot") throw new Error("injected: boot failed");
        return machine.boot(mode, signal);
      },
    });
  }
}

describe("lifecycle failure paths (fake backend)", () => {
  let faults: FakeHome;
  const attached: string[] = [];
  const services: HostServices = {
    attach: async (name) => {
      attached.push(name);
    },
    detach: async (name) => {
      attached.splice(attached.indexOf(name), 1);
    },
  };
  before(() => {
    faults = fakeHome();
  });
  after(() => {
    const survivors = [...processesMentioning(faults.stateDir), ...processesMentioning(runRoot())];
    faults.remove();
    assert.deepEqual(survivors, []);
  });

  for (const fault of ["boot", "vmm-exits"] as const) {
    it(`undoes every step when ${fault === "boot" ? "the machine's boot" : "the VMM"} fails`, async () => {
      const driver: Driver = new FaultyDriver(fault);
      const manager = new Manager({ driver, services });
      // Ports make the start attach host services, so their undo is exercised too.
      const vm = await manager.create({
        name: `f-${fault}`,
        backend: "fake",
        ports: [{ hostPort: 39_000 + (fault === "boot" ? 1 : 2), guestPort: 80 }],
      });
      await assert.rejects(manager.start(vm.name), (err) => {
        assert.ok(isCorralError(err, "VM_FAILED"), String(err));
        if (fault === "vmm-exits") assert.match(err.message, /exited with status 3|exit/);
        return true;
      });
      const record = readRecord(vm.paths.config, vm.name);
      assert.equal(record.state, "failed");
      assert.deepEqual(attached, [], "host services detached");
      assert.equal(existsSync(vm.paths.runDir), false, "sockets removed");
      const shim = readShimState(vm.paths);
      if (shim !== undefined) {
        // Killed; a moment may pass before the kernel reports them gone (reaped).
        for (let i = 0; i < 200 && (isAlive(shim.shimPid) || isAlive(shim.vmmPid)); i++) {
          await sleep(10);
        }
        assert.equal(isAlive(shim.shimPid), false, "the shim is gone");
        assert.equal(isAlive(shim.vmmPid), false, "the VMM is gone");
      }
      assert.deepEqual(processesMentioning(vm.paths.dir), []);
      await manager.remove(vm.name);
    });
  }

  it("leaves the record as it was when the start fails before anything launched", async () => {
    const manager = new Manager({ driver: new FaultyDriver("plan"), services });
    const vm = await manager.create({ name: "f-plan", backend: "fake" });
    await assert.rejects(manager.start(vm.name), /injected: plan failed/);
    assert.equal(readRecord(vm.paths.config, vm.name).state, "stopped");
    assert.equal(existsSync(vm.paths.runDir), false);
    await manager.remove(vm.name);
  });

  it("refuses what the backend cannot do before anything exists, naming backend and field", async () => {
    const manager = new Manager({ driver: new FakeDriver(), services });
    const cases: [Record<string, unknown>, string][] = [
      [{ network: "nat" }, "network"],
      [{ mounts: [{ source: "/tmp", target: "/mnt" }] }, "mounts[0]"],
      [{ machine: "microvm", accel: "kvm" }, "accel"],
    ];
    for (const [input, field] of cases) {
      await assert.rejects(
        manager.create({ name: "f-refused", backend: "fake", ...input }),
        (err) => {
          assert.ok(isCorralError(err, "UNSUPPORTED"), String(err));
          assert.match(
            err.message,
            new RegExp(`^${field.replace(/[[\]]/g, "\\$&")}: the fake backend`),
          );
          assert.equal(err.field, field);
          return true;
        },
      );
    }
    assert.deepEqual(
      readdirSync(join(faults.stateDir, "vms")).filter((n) => !n.startsWith(".")),
      [],
    );
  });

  it("refuses a backend this build does not have", async () => {
    const manager = new Manager({ services });
    await assert.rejects(manager.create({ name: "f-fc", backend: "firecracker" }), (err) => {
      assert.ok(isCorralError(err, "UNSUPPORTED"), String(err));
      assert.match(err.message, /firecracker is not available/);
      return true;
    });
  });

  it("refuses pause and snapshots on a backend whose features lack them", async () => {
    const driver = new FakeDriver({ features: { pause: false, snapshots: false } });
    const manager = new Manager({ driver, services });
    await manager.create({ name: "f-lacks", backend: "fake" });
    await manager.start("f-lacks");
    await assert.rejects(manager.pause("f-lacks"), (err) => isCorralError(err, "UNSUPPORTED"));
    await assert.rejects(manager.snapshot("f-lacks", "nope"), (err) =>
      isCorralError(err, "UNSUPPORTED"),
    );
    assert.equal((await manager.inspect("f-lacks")).state, "ready");
    await manager.remove("f-lacks", { force: true });
  });
});
