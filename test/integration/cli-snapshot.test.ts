/**
 * Snapshots with real VMs under TCG: save a running VM (memory, devices, disks), restore it
 * once or many times, refuse damaged or incompatible snapshots, and the memory balloon.
 */
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pushBusyboxImage } from "../support/busybox-image.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { sandbox } from "./harness.js";

const box = sandbox();
let registry: TestRegistry;
let image: string;

before(async () => {
  registry = await startRegistry();
  image = (await pushBusyboxImage(registry.url, "test/busybox", "1")).reference;
});
after(async () => {
  await box.cleanup();
  await registry?.stop();
});

async function ok(args: string[]) {
  const r = await box.corral(args);
  assert.equal(r.code, 0, `corral ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.toString();
}

const vmNames = async () =>
  (JSON.parse(await ok(["ls", "--json"])) as { name: string }[]).map((vm) => vm.name).sort();

describe("snapshots", () => {
  it("restores memory, processes and files; the source keeps running", async () => {
    await ok(["run", "--name", "src", "--", "true"]); // created, booted once, stopped
    await ok(["start", "src"]);
    await ok([
      "exec",
      "src",
      "--",
      "sh",
      "-c",
      "echo before-snapshot > /tmp/mark; sleep 1000 > /dev/null 2>&1 &",
    ]);
    const created = JSON.parse(await ok(["snapshot", "create", "src", "base", "--json"]));
    assert.equal(created.source, "src");
    assert.ok(created.memoryBytes > 1024 * 1024);
    // The source is still a working VM, with its state.
    assert.equal(await ok(["exec", "src", "--", "cat", "/tmp/mark"]), "before-snapshot\n");
    await ok(["exec", "src", "--", "sh", "-c", "echo after-snapshot > /tmp/mark"]);

    assert.equal(await ok(["restore", "base", "--name", "r1"]), "r1\n");
    const r = await ok([
      "exec",
      "r1",
      "--",
      "sh",
      "-c",
      "cat /tmp/mark; ps | grep -c '[s]leep 1000'; dmesg | grep -c 'reseeded due to virtual machine fork'",
    ]);
    assert.equal(r, "before-snapshot\n1\n1\n", "the file and the process from before the snapshot");
    const clock = Number(await ok(["exec", "r1", "--", "date", "+%s"]));
    assert.ok(Math.abs(clock - Date.now() / 1000) < 5, "the restored guest's clock was set");
    const list = JSON.parse(await ok(["snapshot", "ls", "--json"])) as { name: string }[];
    assert.deepEqual(
      list.map((s) => s.name),
      ["base"],
    );
  });

  it("two VMs restored from one snapshot are independent (memory, RNG)", async () => {
    await ok(["restore", "base", "--name", "r2"]);
    await ok(["exec", "r1", "--", "sh", "-c", "echo only-r1 > /tmp/own"]);
    await ok(["exec", "r2", "--", "sh", "-c", "echo only-r2 > /tmp/own"]);
    assert.equal(await ok(["exec", "r1", "--", "cat", "/tmp/own"]), "only-r1\n");
    assert.equal(await ok(["exec", "r2", "--", "cat", "/tmp/own"]), "only-r2\n");
    const uuid = (vm: string) => ok(["exec", vm, "--", "cat", "/proc/sys/kernel/random/uuid"]);
    assert.notEqual(await uuid("r1"), await uuid("r2"), "vmgenid reseeded each clone's RNG");
    await ok(["rm", "-f", "r1", "r2"]);
  });

  it("snapshots an image VM's disk: restores see it frozen and write their own overlays", async () => {
    await ok(["run", "--name", "disk-src", image, "--", "true"]);
    await ok(["start", "disk-src"]);
    await ok(["exec", "disk-src", "--", "sh", "-c", "echo on-disk > /data.txt; sync"]);
    await ok(["snapshot", "create", "disk-src", "disk"]);
    await ok(["exec", "disk-src", "--", "sh", "-c", "echo changed-later > /data.txt; sync"]);
    await ok(["restore", "disk", "--name", "d1"]);
    await ok(["restore", "disk", "--name", "d2"]);
    assert.equal(await ok(["exec", "d1", "--", "cat", "/data.txt"]), "on-disk\n");
    await ok(["exec", "d1", "--", "sh", "-c", "echo d1 > /own.txt; sync"]);
    await ok(["exec", "d2", "--", "sh", "-c", "echo d2 > /own.txt; sync"]);
    assert.equal(await ok(["exec", "d1", "--", "cat", "/own.txt"]), "d1\n");
    assert.equal(await ok(["exec", "d2", "--", "cat", "/own.txt"]), "d2\n");
    assert.equal(await ok(["exec", "disk-src", "--", "cat", "/data.txt"]), "changed-later\n");
    // The restored VMs survive a reboot from their own overlays.
    await ok(["stop", "d1"]);
    await ok(["start", "d1"]);
    assert.equal(await ok(["exec", "d1", "--", "cat", "/own.txt"]), "d1\n");
    await ok(["rm", "-f", "d1", "d2", "disk-src"]);
  });

  it("run --from: the fast path, removed afterwards with --rm", async () => {
    const r = await box.corral(["run", "--rm", "--from", "base", "--", "cat", "/tmp/mark"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "before-snapshot\n");
    assert.deepEqual(await vmNames(), ["src"]);
    const bad = await box.corral(["run", "--from", "base", "--memory", "1G", "--", "true"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--from: .*memory cannot change/);
  });

  it("a truncated or corrupt snapshot is refused with a clear error and leaves no VM", async () => {
    await ok(["snapshot", "create", "src", "victim"]);
    const dir = join(box.stateDir, "snapshots", "victim");
    const memory = join(dir, "memory.bin");
    const size = readFileSync(memory).length;

    const flip = openSync(memory, "r+");
    writeSync(flip, Buffer.from("corrupted!"), 0, 10, Math.floor(size / 2));
    closeSync(flip);
    const corrupt = await box.corral(["restore", "victim", "--name", "bad1"]);
    assert.equal(corrupt.code, 1);
    assert.match(corrupt.stderr, /snapshot "victim" is damaged|could not/);
    const verify = await box.corral(["snapshot", "verify", "victim"]);
    assert.equal(verify.code, 1);
    assert.match(verify.stderr, /memory\.bin does not match its SHA-256/);

    truncateSync(memory, Math.floor(size / 3));
    const truncated = await box.corral(["restore", "victim", "--name", "bad2"]);
    assert.equal(truncated.code, 1);
    assert.match(truncated.stderr, /memory\.bin is \d+ bytes, \d+ were written \(truncated\?\)/);
    assert.deepEqual(await vmNames(), ["src"], "no half-created VM");
    await ok(["snapshot", "rm", "victim"]);
  });

  it("refuses a snapshot taken with another QEMU, naming both versions", async () => {
    await ok(["snapshot", "create", "src", "foreign"]);
    const metaPath = join(box.stateDir, "snapshots", "foreign", "snapshot.json");
    const meta = JSON.parse(readFileSync(metaPath, "utf8"));
    meta.vmmVersion = "QEMU emulator version 6.2.0";
    writeFileSync(metaPath, JSON.stringify(meta));
    const r = await box.corral(["restore", "foreign", "--name", "old"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /taken with QEMU emulator version 6\.2\.0; this host runs QEMU emulator version 7/,
    );
    assert.match(r.stderr, /hint: the qemu backend's saved state is tied to the VMM's version/);
    assert.deepEqual(await vmNames(), ["src"]);
  });

  it("the memory balloon gives guest memory back and the guest sees it", async () => {
    const available = async () => {
      const meminfo = await ok(["exec", "src", "--", "cat", "/proc/meminfo"]);
      return Number(/MemAvailable:\s+(\d+) kB/.exec(meminfo)?.[1]) * 1024;
    };
    const before = await available();
    const set = JSON.parse(await ok(["set", "src", "--memory-target", "128M", "--json"]));
    assert.equal(set.targetBytes, 128 * 1024 * 1024);
    let after = before;
    for (let i = 0; i < 50 && before - after < 64 * 1024 * 1024; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      after = await available();
    }
    assert.ok(
      before - after >= 64 * 1024 * 1024,
      `MemAvailable went from ${before} to ${after}: the balloon took nothing`,
    );
    await ok(["set", "src", "--memory-target", "256M"]);
    const bad = await box.corral(["set", "src", "--memory-target", "4G"]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /memoryTarget \(--memory-target\): must be between 64M and the VM's 256M/,
    );
  });
});
