/**
 * Warm pool benchmark: a pool of 2 (corral-default, 1 vCPU, 256 MiB, TCG) made with the
 * library's `createPool`; once both members are ready, `takeFromPool` is timed (the daemon's
 * answer with a ready VM's name, as `run --pool` gets it), then take -> first exec result
 * (`true`). The handed-out VM is removed and the pool refills to 2 ready before the next
 * hand-out (a refill boots a VM, which takes the CPU). Medians.
 * Last line `ratio: take_ms / 50` (the limit: < 1 means under 50 ms).
 *
 *   npm run bench:pool [-- --runs 5]
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createPool, listPools, takeFromPool } from "../src/daemon/pool-client.js";
import type { PoolStatus } from "../src/daemon/pools.js";
import { Manager } from "../src/index.js";
import {
  median,
  ms,
  numberArg,
  percentile,
  privateStateDir,
  say,
  Teardown,
} from "./support/env.js";

const runs = numberArg("runs", 5);
const POOL = "bench";
const SIZE = 2;
const LIMIT_MS = 50;

const stateDir = privateStateDir("pool");
const manager = new Manager();
const teardown = new Teardown();
teardown.addCorralState(manager, stateDir);

async function waitFull(timeoutMs: number): Promise<{ status: PoolStatus; waitedMs: number }> {
  const start = performance.now();
  for (;;) {
    const status = (await listPools()).find((p) => p.name === POOL);
    if (status === undefined) throw new Error(`pool ${POOL} is gone`);
    if (status.ready.length >= SIZE && status.starting === 0) {
      return { status, waitedMs: performance.now() - start };
    }
    if (performance.now() - start > timeoutMs) {
      throw new Error(`pool has ${status.ready.length}/${SIZE} ready: ${status.lastError ?? ""}`);
    }
    await sleep(100);
  }
}

const take: number[] = [];
const toExec: number[] = [];
const execAlone: number[] = [];
const refill: number[] = [];
const daemonCall: number[] = [];
const listVms: number[] = [];
let fillMs = 0;
try {
  const created = performance.now();
  await createPool({ name: POOL, size: SIZE, spec: { cpus: 1, memory: "256M" } });
  await waitFull(300_000);
  fillMs = performance.now() - created;

  for (let i = 0; i < runs; i++) {
    // What a take costs besides the claim: one daemon round trip (listPools: connect, health,
    // one request), and the VM listing the daemon does to find a free member.
    let t = performance.now();
    await listPools();
    daemonCall.push(performance.now() - t);
    t = performance.now();
    await manager.list();
    listVms.push(performance.now() - t);

    const start = performance.now();
    const name = await takeFromPool(POOL);
    const took = performance.now() - start;
    const r = await (await manager.agent(name)).run({ argv: ["true"] });
    const done = performance.now() - start;
    if (r.exitCode !== 0) throw new Error(`exec true in ${name} exited ${r.exitCode}`);
    t = performance.now();
    await (await manager.agent(name)).run({ argv: ["true"] });
    execAlone.push(performance.now() - t);
    take.push(took);
    toExec.push(done);
    await manager.remove(name, { force: true });
    const full = await waitFull(300_000);
    refill.push(full.waitedMs);
    say(
      `hand-out ${i + 1}/${runs}: take ${took.toFixed(1)} ms (${name}), take -> exec result ` +
        `${done.toFixed(1)} ms; refilled in ${ms(full.waitedMs)}`,
    );
  }
} finally {
  await teardown.run();
}

const f = (v: number[]) => `${median(v).toFixed(1)} ms (p90 ${percentile(v, 90).toFixed(1)} ms)`;
say(
  `pool: ${SIZE} x corral-default, 1 vCPU, 256 MiB, TCG; filled in ${ms(fillMs)} (one at a time)`,
);
say(`takeFromPool (median of ${runs}): ${f(take)}`);
say(`take -> first exec result of true (median of ${runs}): ${f(toExec)}`);
say(`for comparison: a second exec of true on the taken VM ${f(execAlone)}`);
say(`  one daemon call (listPools) ${f(daemonCall)}; manager.list() here ${f(listVms)}`);
say(`refill of one member after a hand-out (median): ${ms(median(refill))}`);
const ratio = median(take) / LIMIT_MS;
say(`ratio = take median / ${LIMIT_MS} ms limit (< 1: under the limit)`);
say(`ratio: ${ratio.toFixed(2)}`);
