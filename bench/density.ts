/**
 * Density benchmark: 20 idle VMs (corral-default, 1 vCPU, 128 MiB each, TCG) created, then
 * started all at once (`--concurrency N` to start at most N at a time); wall time from the
 * first start until all 20 answered an exec of `true`; then every VM answers `hostname`, and
 * per VM: corral's own host memory (the shim + vhost-device-vsock sidecar RSS that
 * `manager.stats(name).overhead.rssBytes` reports, plus a daemon's RSS / 20 if one runs),
 * QEMU's RSS for context. Last line `ratio: overhead_MiB_per_VM / 15` (the goal's limit).
 *
 *   npm run bench:density [-- --vms 20 --concurrency 20]
 */
import { readFileSync } from "node:fs";
import { daemonStatus } from "../src/daemon/control.js";
import { Manager } from "../src/index.js";
import {
  MiB,
  median,
  ms,
  numberArg,
  percentile,
  privateStateDir,
  say,
  Teardown,
} from "./support/env.js";

const count = numberArg("vms", 20);
const concurrency = numberArg("concurrency", count);
const LIMIT_MIB = 15;
const SPEC = { cpus: 1, memory: "128M", readyTimeoutMs: 600_000 } as const;

const stateDir = privateStateDir("density");
const manager = new Manager();
const teardown = new Teardown();
teardown.addCorralState(manager, stateDir);

/** VmRSS and its parts from /proc/<pid>/status, in bytes. */
function rss(pid: number): { total: number; anon: number; file: number; shmem: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? 0) * 1024;
  return {
    total: kib("VmRSS"),
    anon: kib("RssAnon"),
    file: kib("RssFile"),
    shmem: kib("RssShmem"),
  };
}

const names = Array.from({ length: count }, (_, i) => `bench-d${String(i).padStart(2, "0")}`);
const readyAfter: number[] = [];
let wallMs = 0;
let answered = 0;
const overhead: number[] = [];
const qemu: number[] = [];
const parts = {
  shim: [] as ReturnType<typeof rss>[],
  sidecar: [] as ReturnType<typeof rss>[],
  qemu: [] as ReturnType<typeof rss>[],
};
let daemonRss = 0;
try {
  for (const name of names) await manager.create({ name, ...SPEC });
  const start = performance.now();
  const queue = [...names];
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      await manager.start(name);
      const r = await (await manager.agent(name)).run({ argv: ["true"] });
      if (r.exitCode !== 0) throw new Error(`exec true in ${name} exited ${r.exitCode}`);
      readyAfter.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  wallMs = performance.now() - start;
  say(`all ${count} started and answered exec: ${ms(wallMs)}`);

  for (const name of names) {
    const r = await (await manager.agent(name)).run({ argv: ["hostname"] });
    if (r.exitCode === 0 && r.stdout.toString().trim() === name) answered++;
  }
  for (const name of names) {
    const stats = await manager.stats(name);
    overhead.push(stats.overhead.rssBytes);
    qemu.push(stats.vmm.rssBytes);
    const vm = await manager.inspect(name);
    if (vm.pids !== undefined) {
      parts.shim.push(rss(vm.pids.shim));
      parts.qemu.push(rss(vm.pids.vmm));
      if (vm.pids.sidecar !== null) parts.sidecar.push(rss(vm.pids.sidecar));
    }
  }
  const daemon = await daemonStatus();
  if (daemon.health !== undefined) daemonRss = rss(daemon.health.pid).total;
} finally {
  await teardown.run();
}

const m = (bytes: number) => `${(bytes / MiB).toFixed(2)} MiB`;
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
const perVm = (sum(overhead) + daemonRss) / count;
const part = (list: ReturnType<typeof rss>[], key: keyof ReturnType<typeof rss>) =>
  m(median(list.map((p) => p[key])));
say(
  `spec: ${count} x corral-default, ${SPEC.cpus} vCPU, ${SPEC.memory}, TCG, 2 host cores; ` +
    `started ${concurrency >= count ? "all at once" : `${concurrency} at a time`}`,
);
say(
  `wall time from the first start to all ${count} answering exec: ${ms(wallMs)} ` +
    `(per VM ready + exec after: median ${ms(median(readyAfter))}, p90 ${ms(percentile(readyAfter, 90))}, ` +
    `first ${ms(Math.min(...readyAfter))})`,
);
say(`VMs answering exec (hostname) afterwards: ${answered}/${count}`);
say(
  `corral overhead per VM (shim + sidecar VmRSS, manager.stats): median ${m(median(overhead))}, ` +
    `max ${m(Math.max(...overhead))}; daemon ${daemonRss === 0 ? "not running" : m(daemonRss)}`,
);
say(
  `  shim: ${part(parts.shim, "total")} (anon ${part(parts.shim, "anon")}, file ${part(parts.shim, "file")}); ` +
    `sidecar: ${part(parts.sidecar, "total")} (anon ${part(parts.sidecar, "anon")}, ` +
    `file ${part(parts.sidecar, "file")}, guest memory mapped from QEMU's memfd ${part(parts.sidecar, "shmem")})`,
);
say(
  `QEMU VmRSS per VM (context, not overhead): median ${m(median(qemu))}, max ${m(Math.max(...qemu))} ` +
    `(guest RAM touched, memfd ${part(parts.qemu, "shmem")}; anon ${part(parts.qemu, "anon")}: ` +
    `TCG translation cache + QEMU heap; file ${part(parts.qemu, "file")})`,
);
say(`corral overhead per VM incl. daemon share: ${m(perVm)} (goal <= ${LIMIT_MIB} MiB)`);
say(`ratio: ${(perVm / MiB / LIMIT_MIB).toFixed(2)}`);
