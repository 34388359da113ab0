/**
 * When a started VM counts as ready: its shim reported the VMM running, the guest agent
 * announced itself (a guest-initiated connection to the ready port, so no host polling while
 * the guest's vsock driver initialises: CONNECTs then were seen to wedge vhost-device-vsock),
 * and the agent answered a ping. A VM that never gets there fails with what it printed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { serialTail } from "../base/tail.js";
import { CorralError, isCorralError, throwIfCancelled } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";
import type { AgentClient } from "../protocols/agent/client.js";
import { readyTimeoutOf } from "../spec/schema.js";
import type { VmRecord } from "./record.js";
import { readShimState, readVmmExit } from "./supervisor.js";

const SHIM_REPORT_TIMEOUT_MS = 10_000;
const AGENT_RETRY_MS = 5;

export async function waitForShim(paths: InstancePaths, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + SHIM_REPORT_TIMEOUT_MS;
  for (;;) {
    throwIfCancelled(signal);
    if (readShimState(paths) !== undefined) return;
    const exit = readVmmExit(paths);
    if (exit !== undefined) throw new CorralError("VM_FAILED", exit.reason);
    if (Date.now() > deadline) {
      throw new CorralError("VM_FAILED", "the VMM shim did not report within 10 s");
    }
    await sleep(3);
  }
}

export async function waitForAgent(
  record: VmRecord,
  paths: InstancePaths,
  notice: Promise<string>,
  agent: AgentClient,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + readyTimeoutOf(record.spec);
  let announced = false;
  void notice.then(() => {
    announced = true;
  });
  while (!announced) {
    throwIfCancelled(signal);
    const exit = readVmmExit(paths);
    if (exit !== undefined) throw new CorralError("VM_FAILED", exit.reason);
    if (Date.now() > deadline) throw notReady(record, paths);
    await Promise.race([notice, sleep(20)]);
  }
  for (;;) {
    throwIfCancelled(signal);
    try {
      await agent.ping({ timeoutMs: 2_000 });
      return;
    } catch (err) {
      if (!isCorralError(err, "VSOCK") && !isCorralError(err, "TIMEOUT")) throw err;
    }
    if (Date.now() > deadline) throw notReady(record, paths);
    await sleep(AGENT_RETRY_MS);
  }
}

/** What the VMM said (its stderr, in the shim log) and what the guest printed last. */
export function failureHint(paths: InstancePaths): string {
  const vmm = serialTail(paths.shimLog, 6)
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("vmm-shim: started"))
    .join("\n");
  const serial = serialTail(paths.serialLog);
  const parts = [
    vmm === "" ? "" : `VMM output:\n${vmm}`,
    serial === ""
      ? "the guest printed nothing on its serial console"
      : `last lines of the serial console:\n${serial}`,
  ];
  return parts.filter((p) => p !== "").join("\n");
}

function notReady(record: VmRecord, paths: InstancePaths): CorralError {
  return new CorralError(
    "NOT_READY",
    `VM "${record.name}" did not answer within ${readyTimeoutOf(record.spec) / 1000} s; it was killed`,
    { hint: failureHint(paths) },
  );
}
