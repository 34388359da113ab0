/**
 * Network benchmark, one VM (--network none), guest -> host, 64 MiB per transfer:
 *   (a) port forward: a guest TCP server on 9000, the host reads from the forwarded host port
 *       (daemon listener -> agent tcp_connect over vsock -> guest loopback TCP);
 *   (b) egress proxy: a guest program CONNECTs through the agent's 127.0.0.1:3128 to an
 *       allowed host server (agent relay -> guest-initiated vsock -> daemon proxy -> host TCP)
 *       and sends;
 *   (c) raw vsock: a guest program on AF_VSOCK port 5000 sends to a host-initiated hybrid
 *       vsock connection read by this process (guest kernel + vhost-device-vsock + one unix
 *       socket: the transport both corral paths ride on, with no agent, daemon or TCP).
 * The same guest sender (bench/support/guest-tool.ts) writes in all three. Interleaved rounds,
 * medians; then the CONNECT setup latency through the proxy (guest-side, median of 20).
 * Last line `ratio: min(forward/raw, proxy/raw)`.
 *
 *   npm run bench:net [-- --rounds 3]
 */
import { readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import type { Readable } from "node:stream";
import { daemonStatus } from "../src/daemon/control.js";
import { isCorralError } from "../src/errors.js";
import { Manager } from "../src/index.js";
import { connectVsock } from "../src/protocols/hybrid-vsock/connect.js";
import { processUsage } from "../src/vm/stats.js";
import {
  MiB,
  mbps,
  median,
  ms,
  numberArg,
  percentile,
  privateStateDir,
  say,
  Teardown,
} from "./support/env.js";
import { buildGuestTool } from "./support/guest-tool.js";

const rounds = numberArg("rounds", 3);
const BYTES = 64 * MiB;
const GUEST_PORT = 9000;
const RAW_PORT = 5000;
const PROXY_PORT = 3128;
const CONNECTS = 20;
const TOOL = "/tmp/bench-net";
const NAME = "bench-net";

const stateDir = privateStateDir("net");
const manager = new Manager();
const teardown = new Teardown();
teardown.addCorralState(manager, stateDir);

/** A port the kernel says is free now (bound and released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Transfer {
  /** First byte to last byte. */
  streamMs: number;
  /** Connection (or request) to last byte. */
  totalMs: number;
  /** CPU time each host process spent on the transfer (guest CPU = QEMU's). */
  cpu?: Record<string, number>;
}

/** The host processes a transfer runs through; this process reads every byte. */
const processes: Record<string, number> = {};
function cpuNow(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [what, pid] of Object.entries(processes)) out[what] = processUsage(pid)?.cpuMs ?? 0;
  const self = process.cpuUsage();
  out.bench = (self.user + self.system) / 1000;
  return out;
}

/** Runs one transfer and adds each process's CPU time during it. */
async function measured(run: () => Promise<Transfer>): Promise<Transfer> {
  const before = cpuNow();
  const t = await run();
  const after = cpuNow();
  const cpu: Record<string, number> = {};
  for (const key of Object.keys(after)) cpu[key] = after[key]! - (before[key] ?? 0);
  return { ...t, cpu };
}

/** Reads `socket` to the end, timing from `start` and from the first byte. */
function drain(socket: Socket, start: number): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    let first = 0;
    let got = 0;
    socket.on("data", (chunk: Buffer) => {
      if (got === 0) first = performance.now();
      got += chunk.length;
      if (got >= BYTES) {
        const now = performance.now();
        socket.end();
        if (got !== BYTES) reject(new Error(`received ${got} bytes, expected ${BYTES}`));
        resolve({ streamMs: now - first, totalMs: now - start });
      }
    });
    socket.on("error", reject);
    socket.on("close", () => {
      if (got < BYTES) reject(new Error(`connection closed after ${got} of ${BYTES} bytes`));
    });
  });
}

/** Resolves once the guest tool printed "listening" (its server socket is bound). */
function listening(stdout: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("listening")) resolve();
    });
    stdout.on("end", () => reject(new Error(`guest tool ended before listening: ${out}`)));
  });
}

async function guestTool(args: string[]) {
  const proc = await manager.exec(NAME, { argv: [TOOL, ...args] });
  const stderr: Buffer[] = [];
  proc.stderr.on("data", (c: Buffer) => stderr.push(c));
  const done = proc.result.then((r) => {
    if (r.exitCode !== 0) {
      throw new Error(`${args.join(" ")} exited ${r.exitCode}: ${Buffer.concat(stderr)}`);
    }
  });
  return { proc, done };
}

async function raw(vsockSocket: string): Promise<Transfer> {
  const { proc, done } = await guestTool(["vsock-serve", String(RAW_PORT), String(BYTES)]);
  await listening(proc.stdout);
  const start = performance.now();
  const socket = await connectVsock(vsockSocket, RAW_PORT, { timeoutMs: 5_000 });
  const t = await drain(socket, start);
  await done;
  return t;
}

async function forward(hostPort: number): Promise<Transfer> {
  const { proc, done } = await guestTool(["tcp-serve", String(GUEST_PORT), String(BYTES)]);
  await listening(proc.stdout);
  const start = performance.now();
  const socket = createConnection({ host: "127.0.0.1", port: hostPort });
  const t = await drain(socket, start);
  await done;
  return t;
}

/** The allowed host server: each connection is handed to whoever waits for the next one. */
let nextConnection: ((socket: Socket) => void) | undefined;
function targetServer(): Server {
  return createServer((socket) => {
    const take = nextConnection;
    nextConnection = undefined;
    if (take === undefined) {
      // The latency run's tunnels: the guest closes them once the 200 arrived.
      socket.resume();
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
      return;
    }
    take(socket);
  });
}

async function proxy(target: string): Promise<Transfer> {
  const accepted = new Promise<Socket>((resolve) => {
    nextConnection = resolve;
  });
  const start = performance.now();
  const { done } = await guestTool(["connect-send", String(PROXY_PORT), target, String(BYTES)]);
  const socket = await accepted;
  const t = await drain(socket, start);
  await done;
  return t;
}

async function connectLatency(target: string): Promise<number[]> {
  const r = await (await manager.agent(NAME)).run({
    argv: [TOOL, "connect-latency", String(PROXY_PORT), target, String(CONNECTS)],
  });
  if (r.exitCode !== 0) throw new Error(`connect-latency failed: ${r.stderr.toString()}`);
  return r.stdout
    .toString()
    .trim()
    .split("\n")
    .map((us) => Number(us) / 1000);
}

const results = { raw: [] as Transfer[], forward: [] as Transfer[], proxy: [] as Transfer[] };
let latencies: number[] = [];
try {
  const tool = buildGuestTool(stateDir);
  const server = targetServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  teardown.add("target server", () => new Promise<void>((r) => server.close(() => r())));
  const targetPort = (server.address() as { port: number }).port;
  const target = `127.0.0.1:${targetPort}`;
  const hostPort = await freePort();

  await manager.create({
    name: NAME,
    ports: [{ hostIp: "127.0.0.1", hostPort, guestPort: GUEST_PORT }],
    allowHosts: [target],
  });
  const vm = await manager.start(NAME);
  const agent = await manager.agent(NAME);
  await agent.writeFile(TOOL, readFileSync(tool), { mode: 0o755 });
  say(
    `VM: ${vm.spec.cpus} vCPU, ${vm.spec.memory} MiB, TCG; forward 127.0.0.1:${hostPort} -> ` +
      `guest :${GUEST_PORT}; allowed egress ${target}; ${BYTES / MiB} MiB per transfer, guest -> host`,
  );

  const daemon = await daemonStatus();
  if (vm.pids === undefined || daemon.health === undefined) throw new Error("no pids for the VM");
  processes.qemu = vm.pids.vmm;
  if (vm.pids.sidecar !== null) processes.sidecar = vm.pids.sidecar;
  processes.daemon = daemon.health.pid;
  // Warm-up (not counted): the agent's and daemon's first connections, page cache of the tool.
  await raw(vm.paths.vsockSocket);
  await forward(hostPort);
  await proxy(target);
  for (let i = 0; i < rounds; i++) {
    results.raw.push(await measured(() => raw(vm.paths.vsockSocket)));
    results.forward.push(await measured(() => forward(hostPort)));
    results.proxy.push(await measured(() => proxy(target)));
    const line = (t: Transfer) => `${mbps(BYTES, t.streamMs)} MB/s`;
    say(
      `round ${i + 1}/${rounds}: raw ${line(results.raw[i]!)}, forward ${line(results.forward[i]!)}, ` +
        `proxy ${line(results.proxy[i]!)}`,
    );
  }
  latencies = await connectLatency(target);
} catch (err) {
  if (isCorralError(err)) process.stderr.write(`${err.message}\n${err.hint ?? ""}\n`);
  throw err;
} finally {
  await teardown.run();
}

const rate = (ts: Transfer[]) => BYTES / 1e6 / (median(ts.map((t) => t.streamMs)) / 1000);
const total = (ts: Transfer[]) => ms(median(ts.map((t) => t.totalMs)));
const raw_ = rate(results.raw);
const fwd = rate(results.forward);
const prx = rate(results.proxy);
say(
  `raw vsock (guest AF_VSOCK -> hybrid vsock socket), median of ${rounds}: ` +
    `${raw_.toFixed(1)} MB/s (connect to last byte ${total(results.raw)})`,
);
say(
  `port forward (host TCP -> daemon -> agent tcp_connect -> guest TCP), median of ${rounds}: ` +
    `${fwd.toFixed(1)} MB/s (connect to last byte ${total(results.forward)})`,
);
say(
  `egress proxy (guest TCP -> agent -> vsock -> daemon proxy -> host TCP), median of ${rounds}: ` +
    `${prx.toFixed(1)} MB/s (exec start to last byte ${total(results.proxy)})`,
);
const cpuLine = (ts: Transfer[]) =>
  Object.keys(ts[0]?.cpu ?? {})
    .map((k) => `${k} ${ms(median(ts.map((t) => t.cpu?.[k] ?? 0)))}`)
    .join(", ");
say(`host CPU per transfer (median): raw: ${cpuLine(results.raw)}`);
say(`  forward: ${cpuLine(results.forward)}`);
say(`  proxy: ${cpuLine(results.proxy)}`);
say(`forward/raw: ${(fwd / raw_).toFixed(2)}, proxy/raw: ${(prx / raw_).toFixed(2)} (goal >= 0.7)`);
say(
  `CONNECT through the proxy to the 200 reply, guest clock (${CONNECTS} in a row): ` +
    `median ${median(latencies).toFixed(1)} ms, p90 ${percentile(latencies, 90).toFixed(1)} ms`,
);
say(`ratio: ${Math.min(fwd / raw_, prx / raw_).toFixed(2)}`);
