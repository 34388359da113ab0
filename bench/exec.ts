/**
 * Exec benchmark, in ONE running VM that has both agents: (a) corral's exec of `true`
 * (AgentClient.run with the Manager's keep-alive settings: what `manager.exec` /
 * `manager.agent(name).run` do, minus the CLI; a kept hybrid-vsock connection whose guest
 * handler is warm), vs (b) qemu-guest-agent's guest-exec of
 * /bin/true + guest-exec-status polled until `exited` (one persistent chardev connection, the
 * next poll sent as soon as the previous reply arrived). Interleaved, medians and p90;
 * last line `ratio: a/b` (median over median).
 *
 *   npm run bench:exec [-- --runs 50]
 *
 * The VM is corral's default image and exactly corral's QEMU argv (qemuArgs + the sidecar),
 * started by hand because two things are not spec fields: an initrd with qemu-ga added
 * (bench/support/qga.ts) and the virtio-serial port QGA talks over.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { findDefaultImage } from "../src/images/default-image.js";
import { runRoot } from "../src/paths/layout.js";
import { AGENT_VSOCK_PORT } from "../src/protocols/agent/ports.js";
import { connectVsock } from "../src/protocols/hybrid-vsock/connect.js";
import {
  median,
  ms,
  numberArg,
  percentile,
  privateStateDir,
  say,
  Teardown,
} from "./support/env.js";
import { launchByHand } from "./support/hand-vm.js";
import { buildQgaInitrd, QgaClient, qgaDeviceArgs } from "./support/qga.js";

const runs = numberArg("runs", 50);
const WARMUP = 5;

const stateDir = privateStateDir("exec");
const teardown = new Teardown();
teardown.add("state directory", () => {
  rmSync(runRoot(), { recursive: true, force: true });
  rmSync(stateDir, { recursive: true, force: true });
});

const image = findDefaultImage();
if (image === undefined) throw new Error('no default image: run "corral setup" first');

const corral: number[] = [];
const qga: number[] = [];
const polls: number[] = [];
const parts = {
  connect: [] as number[],
  ping: [] as number[],
  keptPing: [] as number[],
  qgaPing: [] as number[],
  fresh: [] as number[],
};
let bootMs = 0;
let spawnMs = 0;
let added = "";
try {
  const initrd = await buildQgaInitrd(image, stateDir);
  added = `${(initrd.addedBytes / 1024 / 1024).toFixed(1)} MiB archive: qemu-ga + ${initrd.libraries} libraries`;
  const qgaSocket = join(stateDir, "qga.sock");
  const vm = await launchByHand({
    spec: {
      name: "bench-exec",
      memory: "256M",
      // rc loads extra modules from the last corral.modules= (this one replaces corral's).
      cmdline: ["corral.modules=virtio_balloon,virtio_console"],
    },
    image: { ...image, initrd: initrd.path },
    extraQemuArgs: qgaDeviceArgs(qgaSocket),
    teardown,
  });
  bootMs = vm.bootMs;
  const client = await QgaClient.connect(qgaSocket);
  teardown.add("QGA connection", () => client.close());
  await client.sync(60_000);
  const info = await client.execute<{ version: string }>("guest-info");

  const corralExec = async () => {
    const start = performance.now();
    const r = await vm.keptAgent.run({ argv: ["true"] });
    const elapsed = performance.now() - start;
    if (r.exitCode !== 0) throw new Error(`corral exec true exited ${r.exitCode}`);
    return elapsed;
  };
  const qgaExec = async () => {
    const start = performance.now();
    const { pid } = await client.execute<{ pid: number }>("guest-exec", {
      path: "/bin/true",
      "capture-output": true,
    });
    let n = 0;
    for (;;) {
      n++;
      const s = await client.execute<{ exited: boolean; exitcode?: number }>("guest-exec-status", {
        pid,
      });
      if (s.exited) {
        if (s.exitcode !== 0) throw new Error(`QGA /bin/true exited ${s.exitcode}`);
        break;
      }
    }
    return { elapsed: performance.now() - start, polls: n };
  };

  // Where the time goes, same VM: the channel without a process (connect; connect + ping
  // frame) and QGA's own round trip without a process (guest-ping).
  const timed = async (what: () => Promise<unknown>, into: number[]) => {
    const start = performance.now();
    await what();
    into.push(performance.now() - start);
  };
  for (let i = 0; i < runs; i++) {
    await timed(async () => {
      const socket = await connectVsock(vm.vm.channelSocket, AGENT_VSOCK_PORT, {
        timeoutMs: 5_000,
      });
      socket.destroy();
    }, parts.connect);
    await timed(() => vm.agent.ping(), parts.ping);
    await timed(() => vm.keptAgent.ping(), parts.keptPing);
    await timed(() => vm.agent.run({ argv: ["true"] }), parts.fresh);
    await timed(() => client.execute("guest-ping"), parts.qgaPing);
  }
  // The guest's own cost of one process (fork + exec + wait of /bin/true by a shell), from
  // one exec of a 50-iteration loop minus one exec of an empty shell.
  const loop = "i=0; while [ $i -lt 50 ]; do /bin/true; i=$((i+1)); done";
  const shell = async (script: string) => {
    const start = performance.now();
    await vm.agent.run({ argv: ["sh", "-c", script] });
    return performance.now() - start;
  };
  await shell(loop);
  spawnMs =
    (median([await shell(loop), await shell(loop), await shell(loop)]) -
      median([await shell(":"), await shell(":"), await shell(":")])) /
    50;
  for (let i = 0; i < WARMUP; i++) {
    await corralExec();
    await qgaExec();
  }
  for (let i = 0; i < runs; i++) {
    // Alternate who goes first, so neither always runs right after the other's exit.
    if (i % 2 === 0) {
      corral.push(await corralExec());
      const q = await qgaExec();
      qga.push(q.elapsed);
      polls.push(q.polls);
    } else {
      const q = await qgaExec();
      qga.push(q.elapsed);
      polls.push(q.polls);
      corral.push(await corralExec());
    }
  }
  say(
    `VM: corral-default ${image.version} + ${added}; 1 vCPU, 256 MiB, TCG; qemu-ga ${info.version} ` +
      `on virtio-serial; boot to READY ${ms(bootMs)}`,
  );
} finally {
  await teardown.run();
}

const list = (v: number[]) =>
  `median ${median(v).toFixed(1)} ms, p90 ${percentile(v, 90).toFixed(1)} ms`;
say(
  `corral exec true (AgentClient.run, kept connection: exec + exit frame), ${runs} runs: ${list(corral)}`,
);
say(
  `qemu-ga guest-exec /bin/true + guest-exec-status until exited, ${runs} runs: ${list(qga)} ` +
    `(status polls per exec: median ${median(polls)}, max ${Math.max(...polls)})`,
);
say(
  `same VM, no process started: hybrid-vsock connect to the agent ${list(parts.connect)}; ` +
    `connect + ping frame ${list(parts.ping)}; ping on a kept connection ${list(parts.keptPing)}; ` +
    `qemu-ga guest-ping ${list(parts.qgaPing)}`,
);
say(`corral exec true on a fresh connection each time (no keep-alive): ${list(parts.fresh)}`);
say(
  `guest fork + exec + wait of /bin/true from a shell loop: ${spawnMs.toFixed(1)} ms per process`,
);
say(`goal: corral <= 0.5x qemu-ga`);
say(`ratio: ${(median(corral) / median(qga)).toFixed(2)}`);
