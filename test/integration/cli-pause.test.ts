import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sandbox } from "./harness.js";

const box = sandbox();
after(() => box.cleanup());

const state = async (name: string) =>
  JSON.parse((await box.corral(["inspect", name])).stdout.toString()).state;

describe("pause and resume", () => {
  it("freezes the guest, refuses exec while paused, and resumes with a correct clock", async () => {
    assert.equal((await box.corral(["create", "--name", "nap"])).code, 0);
    assert.equal((await box.corral(["start", "nap"])).code, 0);
    const counter = await box.corral([
      "exec",
      "nap",
      "--",
      "sh",
      "-c",
      "(while :; do echo x >> /tmp/ticks; sleep 0.2; done) >/dev/null 2>&1 &",
    ]);
    assert.equal(counter.code, 0, counter.stderr);
    assert.equal((await box.corral(["pause", "nap"])).code, 0);
    assert.equal(await state("nap"), "paused");
    const refused = await box.corral(["exec", "nap", "--", "true"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /paused/);
    assert.match(refused.stderr, /corral resume nap/);
    await sleep(3000);
    const resumed = await box.corral(["resume", "nap"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(await state("nap"), "ready");
    const date = await box.corral(["exec", "nap", "--", "date", "+%s"]);
    assert.equal(date.code, 0, date.stderr);
    const skew = Math.abs(Number(date.stdout.toString().trim()) - Date.now() / 1000);
    assert.ok(skew < 3, `guest clock is ${skew.toFixed(1)} s off after resume`);
    const ticks = await box.corral(["exec", "nap", "--", "sh", "-c", "wc -l < /tmp/ticks"]);
    assert.ok(
      Number(ticks.stdout.toString()) > 0,
      "the process started before the pause still runs",
    );
  });

  it("stops a paused VM cleanly and refuses to pause a stopped one", async () => {
    assert.equal((await box.corral(["pause", "nap"])).code, 0);
    const stop = await box.corral(["stop", "nap"]);
    assert.equal(stop.code, 0, stop.stderr);
    const vm = JSON.parse((await box.corral(["inspect", "nap"])).stdout.toString());
    assert.equal(vm.state, "stopped");
    assert.match(vm.reason, /shut down cleanly/);
    const again = await box.corral(["pause", "nap"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is stopped, not ready/);
    assert.equal((await box.corral(["rm", "nap"])).code, 0);
  });
});
