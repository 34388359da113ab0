/**
 * A VM started by hand with exactly corral's argv (qemuArgs + the vhost-device-vsock sidecar)
 * plus extra QEMU arguments and another initrd, neither of which a spec can say. No shim, no
 * record: the benchmark owns both processes (and kills them, see Teardown.addProcess).
 * The corral agent is reached exactly as the library reaches it: AgentClient over
 * connectVsock on the hybrid-vsock socket.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import { waitForPath } from "../../src/base/wait.js";
import type { VmContext } from "../../src/drivers/driver.js";
import { qemuArgs, vhostVsockArgs } from "../../src/drivers/qemu/args.js";
import { qemuFiles } from "../../src/drivers/qemu/files.js";
import { findVhostDeviceVsock } from "../../src/drivers/qemu/vhost-device-vsock.js";
import { requireTool } from "../../src/host/tools.js";
import type { ImageInfo } from "../../src/images/image-info.js";
import { ensurePrivateDir, instancePaths } from "../../src/paths/layout.js";
import { AgentClient } from "../../src/protocols/agent/client.js";
import { AGENT_READY_PORT, AGENT_VSOCK_PORT } from "../../src/protocols/agent/ports.js";
import { connectVsock } from "../../src/protocols/hybrid-vsock/connect.js";
import { firstGuestLine } from "../../src/protocols/hybrid-vsock/listen.js";
import { parseSpec, type VmSpecInput } from "../../src/spec/schema.js";
import { AGENT_KEEP_ALIVE } from "../../src/vm/guest.js";
import type { Teardown } from "./env.js";

export interface HandVm {
  vm: VmContext;
  /** A fresh connection per operation. */
  agent: AgentClient;
  /** Idle connections kept for reuse, as manager.exec does. */
  keptAgent: AgentClient;
  qemu: ChildProcess;
  sidecar: ChildProcess;
  /** Host milliseconds from QEMU's spawn to the agent's READY notice. */
  bootMs: number;
}

export async function launchByHand(opts: {
  spec: Partial<VmSpecInput> & { name: string };
  image: ImageInfo;
  extraQemuArgs: string[];
  teardown: Teardown;
  readyTimeoutMs?: number;
}): Promise<HandVm> {
  const id = randomBytes(6).toString("hex");
  const paths = instancePaths(opts.spec.name, id);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  ensurePrivateDir(paths.runDir);
  const vm: VmContext = {
    id,
    spec: parseSpec({ accel: "tcg", ...opts.spec }),
    instanceDir: paths.dir,
    runDir: paths.runDir,
    serialLog: paths.serialLog,
    channelSocket: paths.vsockSocket,
    switchSocket: paths.netSocket,
    image: opts.image,
    mac: "02:00:00:be:0c:01",
    disks: [],
  };
  const sidecarPath = findVhostDeviceVsock();
  if (sidecarPath === undefined) throw new Error('vhost-device-vsock not found: "corral setup"');
  const ready = await firstGuestLine(paths.vsockSocket, AGENT_READY_PORT, /^READY \S+ \d+$/);
  opts.teardown.add("READY listener", () => ready.close());

  const log = openSync(paths.shimLog, "a");
  const [sidecarBin, ...sidecarArgs] = vhostVsockArgs(sidecarPath, vm);
  const sidecar = spawn(sidecarBin!, sidecarArgs, { stdio: ["ignore", log, log] });
  opts.teardown.addProcess("vhost-device-vsock", sidecar);
  await waitForPath(qemuFiles(paths.runDir).vhostUserSocket, 10_000);

  const [qemuBin, ...qemuRest] = qemuArgs(requireTool("qemu-system-x86_64"), vm, { accel: "tcg" });
  const start = performance.now();
  const qemu = spawn(qemuBin!, [...qemuRest, ...opts.extraQemuArgs], {
    stdio: ["ignore", log, log],
  });
  opts.teardown.addProcess("qemu", qemu);
  const timeoutMs = opts.readyTimeoutMs ?? 120_000;
  const exited = new Promise<never>((_, reject) =>
    qemu.once("exit", (code, signal) =>
      reject(
        new Error(
          `QEMU exited (${signal ?? code}) before the agent was ready:\n${readFileSync(paths.shimLog, "utf8").slice(-2000)}`,
        ),
      ),
    ),
  );
  exited.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no READY notice from the agent within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([ready.line, exited, timeout]);
  } finally {
    clearTimeout(timer);
    ready.close();
  }
  const bootMs = performance.now() - start;
  const connect = () => connectVsock(paths.vsockSocket, AGENT_VSOCK_PORT, { timeoutMs: 5_000 });
  const agent = new AgentClient(connect);
  // What manager.exec / manager.agent(name) use: idle connections kept for reuse.
  const keptAgent = new AgentClient(connect, { keepAlive: AGENT_KEEP_ALIVE });
  opts.teardown.add("kept agent connections", () => keptAgent.close());
  await agent.ping();
  return { vm, agent, keptAgent, qemu, sidecar, bootMs };
}
