/**
 * Restore benchmark, same spec both ways (corral-default, 1 vCPU, 256 MiB, TCG):
 *   (a) restore-to-ready: `manager.restore(snapshot, {name})` until it returns a ready VM,
 *       then one exec of `true`;
 *   (b) cold boot-to-ready: `manager.create` + `manager.start` + one exec of `true`.
 * One warm-up of each, then interleaved runs, medians; each VM is removed after its run (not
 * timed). Also prints the snapshot's creation time, size and the source's pause time.
 * Last line `ratio: a/b`.
 *
 *   npm run bench:restore [-- --runs 5]
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Manager } from "../src/index.js";
import { snapshotPaths } from "../src/paths/layout.js";
import { type SnapshotMeta, stateBytes } from "../src/vm/snapshot-store.js";
import { median, mib, ms, numberArg, privateStateDir, say, Teardown } from "./support/env.js";

const runs = numberArg("runs", 5);
const SPEC = { cpus: 1, memory: "256M" } as const;
const SNAPSHOT = "bench-snap";

const stateDir = privateStateDir("restore");
/** When each VM state was reached in the current run (the Manager's state events). */
let marks: Record<string, number> = {};
const manager = new Manager({
  onEvent: (e) => {
    if (e.type === "state") marks[e.state] ??= performance.now();
  },
});
const teardown = new Teardown();
teardown.addCorralState(manager, stateDir);

async function execTrue(name: string): Promise<void> {
  const r = await (await manager.agent(name)).run({ argv: ["true"] });
  if (r.exitCode !== 0) throw new Error(`exec true in ${name} exited ${r.exitCode}`);
}

interface Timed {
  ready: number;
  total: number;
  /** start -> "starting" (recorded; before any process), -> "running" (QMP answers; for a
   * restore also the state loaded and the channel plugged), -> "ready" (agent answered). */
  phases: Record<string, number>;
}

function phases(start: number, readyAt: number): Record<string, number> {
  const starting = marks.starting ?? start;
  const running = marks.running ?? starting;
  return {
    "to starting": starting - start,
    "to running": running - starting,
    "to ready": readyAt - running,
  };
}

/** Times `makeReady` (which leaves VM `name` ready) and one exec, then removes the VM. */
async function timed(name: string, makeReady: () => Promise<unknown>): Promise<Timed> {
  marks = {};
  const start = performance.now();
  await makeReady();
  const readyAt = performance.now();
  await execTrue(name);
  const total = performance.now() - start;
  const p = phases(start, readyAt);
  await manager.remove(name, { force: true });
  return { ready: readyAt - start, total, phases: p };
}

const restore = (name: string) => timed(name, () => manager.restore(SNAPSHOT, { name }));

const cold = (name: string) =>
  timed(name, async () => {
    await manager.create({ name, ...SPEC });
    await manager.start(name);
  });

/** Apparent and allocated bytes of the snapshot's files. */
function snapshotSize(): { bytes: number; allocated: number; files: string[] } {
  const dir = snapshotPaths(SNAPSHOT).dir;
  let bytes = 0;
  let allocated = 0;
  const files = readdirSync(dir);
  for (const file of files) {
    const st = statSync(join(dir, file));
    bytes += st.size;
    allocated += st.blocks * 512;
  }
  return { bytes, allocated, files };
}

const restored: Timed[] = [];
const booted: Timed[] = [];
let meta: SnapshotMeta | undefined;
let snapshotMs = 0;
let size = { bytes: 0, allocated: 0, files: [] as string[] };
try {
  await manager.create({ name: "bench-source", ...SPEC });
  await manager.start("bench-source");
  await execTrue("bench-source");
  const start = performance.now();
  meta = await manager.snapshot("bench-source", SNAPSHOT);
  snapshotMs = performance.now() - start;
  size = snapshotSize();
  // An idle TCG guest still costs CPU: the source does not run during the measurements.
  await manager.remove("bench-source", { force: true });

  await restore("bench-warm-r");
  await cold("bench-warm-c");
  for (let i = 0; i < runs; i++) {
    restored.push(await restore(`bench-r${i}`));
    booted.push(await cold(`bench-c${i}`));
    say(
      `run ${i + 1}/${runs}: restore ${ms(restored[i]!.total)} (ready ${ms(restored[i]!.ready)}), ` +
        `cold ${ms(booted[i]!.total)} (ready ${ms(booted[i]!.ready)})`,
    );
  }
} finally {
  await teardown.run();
}

const a = median(restored.map((t) => t.total));
const b = median(booted.map((t) => t.total));
say(`spec: corral-default, ${SPEC.cpus} vCPU, ${SPEC.memory}, TCG`);
say(
  `snapshot create (ready VM, ${meta === undefined ? "?" : mib(stateBytes(meta))} ` +
    `migration stream): ${ms(snapshotMs)}; source paused ${ms(meta?.pausedMs ?? 0)}`,
);
say(
  `snapshot size: ${mib(size.bytes)} (${mib(size.allocated)} allocated; ${size.files.join(", ")})`,
);
say(
  `restore -> ready -> exec true (median of ${runs}): ${ms(a)} ` +
    `(restore() alone ${ms(median(restored.map((t) => t.ready)))})`,
);
say(
  `create + start -> ready -> exec true (median of ${runs}): ${ms(b)} ` +
    `(create + start alone ${ms(median(booted.map((t) => t.ready)))})`,
);
const phaseLine = (ts: Timed[]) =>
  Object.keys(ts[0]?.phases ?? {})
    .map((k) => `${k} ${ms(median(ts.map((t) => t.phases[k] ?? 0)))}`)
    .join(", ");
say(`restore phases (medians): ${phaseLine(restored)}`);
say(`cold phases (medians): ${phaseLine(booted)}`);
say("goal: restore <= 0.2x cold boot");
say(`ratio: ${(a / b).toFixed(2)}`);
