/**
 * The SDK facade against the fake backend (host processes under the real shim and agent):
 * handles, views, events as an async iterator, signals, and two instances with different
 * state directories in one process.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FakeDriver } from "../../src/drivers/fake/driver.js";
import { Corral, isCorralError, type VmEvent } from "../../src/index.js";
import { runRoot } from "../../src/paths/layout.js";
import { withRoots } from "../../src/paths/roots.js";
import type { HostServices } from "../../src/vm/services.js";
import { type FakeHome, fakeHome } from "../support/fake-backend.js";
import { processesMentioning } from "../support/processes.js";

/** The fake VMs need no host services; a daemon must not be started by these tests. */
const services: HostServices = { attach: async () => {}, detach: async () => {} };

function corralIn(home: FakeHome): Corral {
  return new Corral({
    stateDir: home.stateDir,
    cacheDir: home.cacheDir,
    driver: new FakeDriver(),
    services,
  });
}

async function rejectsKind(p: Promise<unknown>, kind: string, code?: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCorralError(err), String(err));
    assert.equal(err.kind, kind, `${err.code}: ${err.message}`);
    if (code !== undefined) assert.equal(err.code, code);
    return true;
  });
}

describe("Corral (fake backend)", () => {
  let homeA: FakeHome;
  let homeB: FakeHome;
  let a: Corral;
  let b: Corral;
  const savedEnv = process.env.CORRAL_STATE_DIR;
  // The environment names a third directory: an instance must not look there.
  const elsewhere = mkdtempSync(join(tmpdir(), "corral-elsewhere-"));

  before(() => {
    homeA = fakeHome({ setEnv: false });
    homeB = fakeHome({ setEnv: false });
    a = corralIn(homeA);
    b = corralIn(homeB);
    process.env.CORRAL_STATE_DIR = elsewhere;
  });
  after(async () => {
    for (const corral of [a, b]) {
      for (const vm of await corral.vms.list()) {
        await (await corral.vms.get(vm.name)).remove({ force: true });
      }
      for (const snap of await corral.snapshots.list()) await corral.snapshots.remove(snap.name);
    }
    const survivors = [homeA, homeB].flatMap((home) => [
      ...processesMentioning(home.stateDir),
      ...processesMentioning(withRoots(home, () => runRoot())),
    ]);
    homeA.remove();
    homeB.remove();
    rmSync(elsewhere, { recursive: true, force: true });
    if (savedEnv === undefined) delete process.env.CORRAL_STATE_DIR;
    else process.env.CORRAL_STATE_DIR = savedEnv;
    assert.deepEqual(survivors, [], "no process of these tests survives them");
  });

  it("reads its directories once", () => {
    assert.equal(a.stateDir, homeA.stateDir);
    assert.equal(a.cacheDir, homeA.cacheDir);
    assert.equal(new Corral({ env: { CORRAL_STATE_DIR: "/somewhere" } }).stateDir, "/somewhere");
  });

  it("creates, gets and lists VMs as views", async () => {
    const vm = await a.vms.create({ name: "one", backend: "fake", cpus: 2 });
    assert.equal(vm.name, "one");
    const view = await vm.inspect();
    assert.equal(view.state, "stopped");
    assert.equal(view.backend, "fake");
    assert.equal(view.cpus, 2);
    assert.deepEqual(view.image, {
      kind: "builtin",
      name: "corral-default",
      version: "fake",
      digest: view.image.kind === "builtin" ? view.image.digest : "",
    });
    assert.deepEqual(
      (await a.vms.list()).map((v) => v.name),
      ["one"],
    );
    assert.equal((await a.vms.get("one")).name, "one");
    await rejectsKind(a.vms.get("nope"), "not-found", "VM_NOT_FOUND");
  });

  it("keeps two instances with different state directories apart", async () => {
    await b.vms.create({ name: "two", backend: "fake" });
    const [inA, inB] = await Promise.all([a.vms.list(), b.vms.list()]);
    assert.deepEqual(
      inA.map((v) => v.name),
      ["one"],
    );
    assert.deepEqual(
      inB.map((v) => v.name),
      ["two"],
    );
    await rejectsKind(b.vms.get("one"), "not-found");
    // Both boot at once, each under its own directories, sockets included.
    const [one, two] = await Promise.all([a.vms.get("one"), b.vms.get("two")]);
    const [upA, upB] = await Promise.all([one.start(), two.start()]);
    assert.deepEqual([upA.state, upB.state], ["ready", "ready"]);
    const [outA, outB] = await Promise.all([one.run(["echo", "a"]), two.run(["echo", "b"])]);
    assert.deepEqual([outA.stdout, outB.stdout], ["a\n", "b\n"]);
    for (const [home, view] of [
      [homeA, upA],
      [homeB, upB],
    ] as const) {
      const text = JSON.stringify(view);
      for (const path of [home.stateDir, home.cacheDir, withRoots(home, () => runRoot())]) {
        assert.ok(!text.includes(path), `the view carries ${path}: ${text}`);
      }
    }
    await Promise.all([one.stop({ timeoutMs: 5_000 }), two.stop({ timeoutMs: 5_000 })]);
    assert.deepEqual(
      (await new Corral({ services }).vms.list()).map((v) => v.name),
      [],
      "the environment's state directory has none",
    );
  });

  it("starts, runs and stops through the handle, with its events as an async iterator", async () => {
    const vm = await a.vms.get("one");
    const stopEvents = new AbortController();
    const seen: VmEvent[] = [];
    const events = a.events({ vm: "one", signal: stopEvents.signal });
    const reading = (async () => {
      for await (const event of events) seen.push(event);
    })();
    const started = await vm.start();
    assert.equal(started.state, "ready");
    assert.ok(started.pids !== undefined && started.pids.vmm > 0);
    const out = await vm.run(["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    assert.deepEqual(
      { exitCode: out.exitCode, stdout: out.stdout, stderr: out.stderr },
      { exitCode: 3, stdout: "hi\n", stderr: "oops\n" },
    );
    const bounded = await vm.run(["sh", "-c", "head -c 5000 /dev/zero"], { maxOutputBytes: 100 });
    assert.equal(bounded.stdout.length, 100);
    assert.equal(bounded.truncated, true);
    assert.match(await vm.serialLog(), /fake vmm: booting/);
    assert.equal((await vm.serialLog({ maxBytes: 4 })).length, 4);
    assert.deepEqual(await vm.egressLog(), []);
    const stopped = await vm.stop({ timeoutMs: 5_000 });
    assert.equal(stopped.state, "stopped");
    stopEvents.abort();
    await reading;
    const states = seen.flatMap((e) => (e.type === "state" ? [e.state] : []));
    for (const state of ["starting", "running", "ready", "stopping", "stopped"] as const) {
      assert.ok(states.includes(state), `${state} in ${states.join(", ")}`);
    }
    assert.ok(
      seen.every((e) => e.name === "one"),
      "only this VM's",
    );
  });

  it("cancels with an aborted signal, leaving nothing behind", async () => {
    await rejectsKind(
      a.vms.create({ name: "never", backend: "fake" }, { signal: AbortSignal.abort() }),
      "cancelled",
    );
    await rejectsKind(a.vms.get("never"), "not-found");
    const vm = await a.vms.get("one");
    await rejectsKind(vm.start({ signal: AbortSignal.abort() }), "cancelled");
    assert.equal((await vm.inspect()).state, "stopped");

    await vm.start();
    const controller = new AbortController();
    const running = vm.run(["sleep", "30"], { signal: controller.signal });
    await sleep(300);
    const began = Date.now();
    controller.abort();
    await rejectsKind(running, "cancelled");
    assert.ok(Date.now() - began < 5_000);
    await rejectsKind(vm.stop({ signal: AbortSignal.abort() }), "cancelled");
    await rejectsKind(vm.snapshot("never", { signal: AbortSignal.abort() }), "cancelled");
    assert.deepEqual(await a.snapshots.list(), []);
    await vm.stop({ timeoutMs: 5_000 });
  });

  it("takes and restores snapshots as views and handles", async () => {
    const vm = await a.vms.get("one");
    await vm.start();
    const snap = await vm.snapshot("snap-1");
    assert.equal(snap.name, "snap-1");
    assert.equal(snap.source, "one");
    assert.equal(snap.backend, "fake");
    assert.deepEqual(
      (await a.snapshots.list()).map((s) => s.name),
      ["snap-1"],
    );
    assert.deepEqual(await b.snapshots.list(), [], "the other instance has none");
    assert.equal((await a.snapshots.verify("snap-1")).name, "snap-1");
    await rejectsKind(a.snapshots.get("nope"), "not-found", "SNAPSHOT_NOT_FOUND");
    const copy = await a.snapshots.restore("snap-1", { name: "copy" });
    const copied = await copy.inspect();
    assert.equal(copied.state, "ready");
    assert.equal(copied.restoredFrom, "snap-1");
    assert.equal((await copy.run(["echo", "restored"])).stdout, "restored\n");
    await copy.remove({ force: true });
    await vm.stop({ timeoutMs: 5_000 });
    await a.snapshots.remove("snap-1");
  });

  it("lists backends with their feature records, and images", async () => {
    const fake = a.backends().find((backend) => backend.name === "fake");
    assert.equal(fake?.runsHere, true);
    assert.equal(fake?.features.pause, true);
    const images = await a.images.list();
    assert.deepEqual(
      images.map((i) => [i.kind, i.kind === "builtin" ? i.version : ""]),
      [["builtin", "fake"]],
    );
    assert.equal((await a.images.inspect("corral-default")).kind, "builtin");
    await rejectsKind(a.images.inspect("alpine:3"), "not-found", "IMAGE_NOT_FOUND");
  });
});
