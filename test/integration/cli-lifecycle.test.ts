import assert from "node:assert/strict";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { processesMentioning, sandbox } from "./harness.js";

// One private state directory per file; cleanup() also proves no process of it survives.
const box = sandbox();
after(() => box.cleanup());

const inspect = async (name: string) =>
  JSON.parse((await box.corral(["inspect", name])).stdout.toString());
const names = async () =>
  JSON.parse((await box.corral(["ls", "--json"])).stdout.toString()).map(
    (vm: { name: string }) => vm.name,
  );

describe("lifecycle across separate CLI invocations", () => {
  it("create, start, exec, stop, start, exec, rm", async () => {
    assert.equal((await box.corral(["create", "--name", "life"])).code, 0);
    assert.equal((await inspect("life")).state, "stopped");
    const started = await box.corral(["start", "life"]);
    assert.equal(started.code, 0, started.stderr);
    const first = await box.corral([
      "exec",
      "life",
      "--",
      "sh",
      "-c",
      "echo one > /tmp/mark; cat /tmp/mark",
    ]);
    assert.equal(first.stdout.toString(), "one\n");
    const follower = box.spawnCorral(["logs", "-f", "life"]);
    let followed = "";
    follower.stdout?.on("data", (chunk: Buffer) => {
      followed += chunk.toString();
    });
    const followerDone = new Promise<number | null>((resolve) => follower.on("close", resolve));
    const stop = await box.corral(["stop", "life"]);
    assert.equal(await followerDone, 0, "logs -f ends when the VM stops");
    assert.match(followed, /corral-init: ready/);
    assert.equal(stop.code, 0, stop.stderr);
    const stopped = await inspect("life");
    assert.equal(stopped.state, "stopped");
    assert.match(stopped.reason, /shut down cleanly/, "stop goes through the ACPI power button");
    assert.equal(
      processesMentioning(stopped.paths.runDir).length,
      0,
      "no VMM or sidecar after stop",
    );
    const logs = await box.corral(["logs", "life"]);
    assert.match(logs.stdout.toString(), /corral-init: start/);
    assert.equal((await box.corral(["start", "life"])).code, 0);
    const again = await box.corral([
      "exec",
      "life",
      "--",
      "sh",
      "-c",
      "cat /tmp/mark 2>/dev/null || echo fresh",
    ]);
    assert.equal(
      again.stdout.toString(),
      "fresh\n",
      "the initramfs root starts fresh on every boot",
    );
    const rmRunning = await box.corral(["rm", "life"]);
    assert.equal(rmRunning.code, 1);
    assert.match(rmRunning.stderr, /is ready/);
    assert.match(rmRunning.stderr, /rm -f life/);
    assert.equal((await box.corral(["rm", "-f", "life"])).code, 0);
    assert.deepEqual(await names(), []);
  });

  it("runs two VMs at once", async () => {
    await Promise.all(["one", "two"].map((n) => box.corral(["create", "--name", n])));
    try {
      const starts = await Promise.all(["one", "two"].map((n) => box.corral(["start", n])));
      for (const s of starts) assert.equal(s.code, 0, s.stderr);
      const outs = await Promise.all(
        ["one", "two"].map((n) => box.corral(["exec", n, "--", "hostname"])),
      );
      assert.deepEqual(
        outs.map((o) => o.stdout.toString()),
        ["one\n", "two\n"],
      );
    } finally {
      assert.equal((await box.corral(["rm", "-f", "one", "two"])).code, 0);
    }
  });
});

describe("faults", () => {
  it("kill -9 of QEMU makes the VM failed, stops its sidecar, and rm cleans everything", async () => {
    assert.equal((await box.corral(["create", "--name", "victim"])).code, 0);
    assert.equal((await box.corral(["start", "victim"])).code, 0);
    const vm = await inspect("victim");
    process.kill(vm.pids.vmm, "SIGKILL");
    await sleep(1500);
    const after = await inspect("victim");
    assert.equal(after.state, "failed");
    assert.match(after.reason, /signal 9/);
    for (const pid of [vm.pids.vmm, vm.pids.sidecar, vm.pids.shim]) {
      assert.throws(() => process.kill(pid, 0), `pid ${pid} is gone`);
    }
    const exec = await box.corral(["exec", "victim", "--", "true"]);
    assert.equal(exec.code, 1);
    assert.match(exec.stderr, /failed/);
    assert.equal((await box.corral(["rm", "victim"])).code, 0);
    assert.deepEqual(processesMentioning(vm.paths.runDir), []);
  });

  it("kills a guest that never answers and quotes its console", async () => {
    const r = await box.corral([
      "run",
      "--name",
      "mute",
      "--ready-timeout",
      "5",
      "--kernel-arg",
      "rdinit=/bin/cat",
      "--",
      "true",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /did not answer within 5 s/);
    assert.match(r.stderr, /serial console/);
    assert.deepEqual(await names(), [], "a failed run leaves nothing behind");
    assert.deepEqual(processesMentioning(box.stateDir), []);
  });
});

describe("bad input", () => {
  it("names an unknown VM", async () => {
    for (const args of [
      ["exec", "ghost", "--", "true"],
      ["start", "ghost"],
      ["rm", "ghost"],
      ["inspect", "ghost"],
    ]) {
      const r = await box.corral(args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, /no VM named "ghost"/);
      assert.match(r.stderr, /hint: list VMs with "corral ls"/);
    }
  });

  it("rejects --memory 12XB naming the flag, creating nothing", async () => {
    const r = await box.corral(["run", "--memory", "12XB", "--", "true"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /memory \(--memory\): cannot parse size "12XB"/);
    assert.match(r.stderr, /hint: .*512M/);
    assert.deepEqual(await names(), []);
  });

  it("rejects a bad name and --cpus", async () => {
    assert.match((await box.corral(["create", "--name", "Bad Name"])).stderr, /name \(--name\): /);
    assert.match((await box.corral(["create", "--cpus", "zero"])).stderr, /--cpus: "zero"/);
    assert.deepEqual(await names(), []);
  });

  it("refuses a duplicate name and keeps the first VM intact", async () => {
    assert.equal((await box.corral(["create", "--name", "dup", "--memory", "300M"])).code, 0);
    const r = await box.corral(["create", "--name", "dup"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /a VM named "dup" already exists/);
    assert.equal((await inspect("dup")).spec.memory, 300);
    assert.equal((await box.corral(["rm", "dup"])).code, 0);
  });

  it("names a missing host tool and the package to install, leaving nothing behind", async () => {
    const emptyPath = mkdtempSync(join(tmpdir(), "corral-nopath-"));
    const r = await box.corral(["run", "--", "true"], { env: { ...box.env, PATH: emptyPath } });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /qemu-system-x86_64 is not installed/);
    assert.match(r.stderr, /apt-get install qemu-system-x86/);
    assert.deepEqual(readdirSync(join(box.stateDir, "vms")), []);
  });
});
