/** Warm pools with real VMs: fill, hand out, refill, remove; and a pool restored from a snapshot. */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sandbox } from "./harness.js";

const box = sandbox();
after(() => box.cleanup());

interface PoolStatus {
  name: string;
  size: number;
  ready: string[];
  handedOut: number;
  lastError?: string;
}

async function pools(): Promise<PoolStatus[]> {
  const r = await box.corral(["pool", "ls", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as PoolStatus[];
}

async function waitReady(name: string, count: number): Promise<PoolStatus> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const pool = (await pools()).find((p) => p.name === name);
    assert.ok(pool !== undefined, `pool ${name} is gone`);
    if (pool.ready.length >= count) return pool;
    if (Date.now() > deadline) {
      throw new Error(`pool ${name} has ${pool.ready.length} of ${count} ready: ${pool.lastError}`);
    }
    await sleep(500);
  }
}

const vmNames = async () =>
  (JSON.parse((await box.corral(["ls", "--json"])).stdout.toString()) as { name: string }[]).map(
    (vm) => vm.name,
  );

describe("warm pools", () => {
  it("fills in the background, hands out a ready VM, removes it after use, refills", async () => {
    const create = await box.corral(["pool", "create", "warm", "--size", "2", "--memory", "192M"]);
    assert.equal(create.code, 0, create.stderr);
    const full = await waitReady("warm", 2);
    const run = await box.corral(["run", "--pool", "warm", "--", "hostname"]);
    assert.equal(run.code, 0, run.stderr);
    const used = run.stdout.toString().trim();
    assert.ok(full.ready.includes(used), `${used} was one of the ready VMs ${full.ready}`);
    assert.ok(!(await vmNames()).includes(used), "a handed-out VM is removed after use");
    const refilled = await waitReady("warm", 2);
    assert.equal(refilled.handedOut, 1);
    assert.ok(!refilled.ready.includes(used));
  });

  it("names a pool that does not exist, and refuses VM flags with --pool", async () => {
    const missing = await box.corral(["run", "--pool", "nope", "--", "true"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no pool named "nope"/);
    const flags = await box.corral(["run", "--pool", "warm", "--cpus", "2", "--", "true"]);
    assert.equal(flags.code, 2);
    assert.match(flags.stderr, /--pool: the VM is made by the pool; cpus cannot change/);
    const bad = await box.corral(["pool", "create", "Bad", "--size", "1"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /pool\.name: lowercase/);
  });

  it("a pool of VMs restored from a snapshot", async () => {
    assert.equal((await box.corral(["run", "--name", "seed", "--", "true"])).code, 0);
    assert.equal((await box.corral(["start", "seed"])).code, 0);
    await box.corral(["exec", "seed", "--", "sh", "-c", "echo from-seed > /tmp/seed"]);
    assert.equal((await box.corral(["snapshot", "create", "seed", "seed-snap"])).code, 0);
    assert.equal((await box.corral(["rm", "-f", "seed"])).code, 0);
    const create = await box.corral([
      "pool",
      "create",
      "fast",
      "--size",
      "1",
      "--from",
      "seed-snap",
    ]);
    assert.equal(create.code, 0, create.stderr);
    await waitReady("fast", 1);
    const run = await box.corral(["run", "--pool", "fast", "--", "cat", "/tmp/seed"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.toString(), "from-seed\n");
  });

  it("pool rm removes the pool and its ready VMs", async () => {
    const rm = await box.corral(["pool", "rm", "warm", "fast"]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(await pools(), []);
    const deadline = Date.now() + 60_000;
    // A refill that was booting when the pool went is removed once it finishes.
    while ((await vmNames()).length > 0 && Date.now() < deadline) await sleep(500);
    assert.deepEqual(await vmNames(), []);
  });
});
