/**
 * Starting a VM, as named steps each with its undo (base/steps.ts): a step that fails undoes
 * every step before it, so a failed start leaves no process, socket or service behind, and the
 * record says why (failed) or that it was interrupted (stopped). Two modes, one step list: a
 * fresh boot, and a restore that loads a snapshot's state (Firecracker's
 * build_microvm_for_boot / build_microvm_from_snapshot).
 */

import { rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { runSteps } from "../base/steps.js";
import type { BootMode, Machine } from "../drivers/driver.js";
import { CorralError, cancelled, isCorralError, throwIfCancelled } from "../errors.js";
import { buildVmmShim } from "../host/vmm-shim-binary.js";
import { buildAgent } from "../images/agent-binary.js";
import { ensurePrivateDir, type InstancePaths } from "../paths/layout.js";
import { AGENT_READY_PORT } from "../protocols/agent/ports.js";
import { parseCloudInit } from "../spec/cloud-init.js";
import { checkMountSource } from "../spec/mounts.js";
import { readyTimeoutOf } from "../spec/schema.js";
import { machineContext } from "./context.js";
import { prepareTap } from "./network.js";
import { failureHint, waitForAgent, waitForShim } from "./readiness.js";
import { releaseResources } from "./reconcile.js";
import type { VmRecord } from "./record.js";
import { driverOf, type Runtime } from "./runtime.js";
import { needsHostServices } from "./services.js";
import { liveHost } from "./sidecar.js";
import { waitForExit } from "./stop.js";
import { saveRecord } from "./store.js";
import { launchShim, readShimState, readVmmExit } from "./supervisor.js";

/** The shim's readiness watchdog fires this long after corral's own deadline (a backstop). */
const WATCHDOG_SLACK_MS = 5_000;

export interface BootOptions {
  signal?: AbortSignal;
  mode?: BootMode;
}

/** Boots `record` (locked by the caller) and waits until its agent answers. */
export async function bootVm(
  rt: Runtime,
  record: VmRecord,
  paths: InstancePaths,
  options: BootOptions = {},
): Promise<VmRecord> {
  const { signal } = options;
  const mode: BootMode = options.mode ?? { kind: "boot" };
  const driver = driverOf(rt, record);
  const channel = driver.channelFor(paths.vsockSocket);
  let state: VmRecord = record;
  // The kept agent of this start (its life is the startedAt the plan step sets).
  const probe = () => rt.guests.agent(paths.vsockSocket, state.startedAt ?? "", channel);
  const host = liveHost(rt, record.name, paths, channel, () => state.startedAt ?? "");
  let machine: Machine | undefined;
  let readyNotice: { line: Promise<string>; close(): void } | undefined;
  /** Failures before this are the caller's input or host (a tool missing): the record stays. */
  let starting = false;
  let launch: () => number = () => {
    throw new CorralError("INTERNAL", "the VMM was launched before it was planned");
  };

  try {
    await runSteps([
      {
        name: "check host resources",
        run: () => {
          // Shared folders may have gone since the VM was created: say so before booting.
          for (const [i, mount] of record.spec.mounts.entries()) {
            checkMountSource(mount, `mounts[${i}] (-v)`);
          }
        },
      },
      {
        name: "clear the last run",
        run: () => {
          // Stale files of a previous run would be taken for this one.
          for (const file of [
            paths.shimState,
            paths.exitFile,
            paths.readyFile,
            paths.serialLog,
            paths.shimLog,
          ]) {
            rmSync(file, { force: true });
          }
          rmSync(paths.runDir, { recursive: true, force: true });
          ensurePrivateDir(paths.runDir);
          return () => rmSync(paths.runDir, { recursive: true, force: true });
        },
      },
      {
        name: "write the cloud-init seed",
        run: async () => {
          if (record.cloudDisk !== undefined) await writeCloudInitSeed(record, paths);
        },
      },
      {
        name: "plan the VMM",
        run: async () => {
          const opened = driver.open(machineContext(record, paths), host);
          machine = opened;
          const plan = await opened.plan(mode);
          const shimPath = await buildVmmShim();
          prepareTap(record.spec, paths);
          state = {
            ...record,
            state: "starting",
            reason: undefined,
            accel: plan.accelerator,
            desired: "running",
            startedAt: new Date().toISOString(),
            readyAt: undefined,
            stoppedAt: undefined,
          };
          launch = () =>
            launchShim({
              shimPath,
              plan,
              paths,
              // The shim's watchdog is the backstop if this process dies mid-boot.
              readyTimeoutMs: readyTimeoutOf(record.spec) + WATCHDOG_SLACK_MS,
            });
          return () => opened.dispose();
        },
      },
      {
        name: "listen for the agent's readiness notice",
        run: async () => {
          const notice = await channel.firstLine(AGENT_READY_PORT, /^READY \S+ \d+$/);
          readyNotice = notice;
          saveRecord(rt.events, state, paths);
          starting = true;
          return () => notice.close();
        },
      },
      {
        name: "attach host services",
        run: async () => {
          throwIfCancelled(signal);
          if (!needsHostServices(record.spec)) return;
          // Forwards bind here: a port taken since create fails the start before any boot.
          await rt.services.attach(record.name);
          return () => rt.services.detach(record.name).catch(() => {});
        },
      },
      {
        name: "launch the VMM",
        run: () => {
          const pid = launch();
          return async () => {
            // The VMM may be dying right now: give the shim a moment to record why.
            if (readVmmExit(paths) === undefined) await waitForExit(paths, 2_000).catch(() => {});
            // The shim had not reported its children yet: its session holds them all.
            if (readShimState(paths) === undefined) killSession(pid);
          };
        },
      },
      { name: "wait for the shim", run: () => waitForShim(paths, signal) },
      {
        name: "boot the machine",
        run: async () => {
          // Kept connections: the first commands after ready find a warm guest handler.
          probe();
          await machine!.boot(mode, signal);
          state = { ...state, state: "running" };
          saveRecord(rt.events, state, paths);
        },
      },
      {
        name: "wait for the agent",
        run: async () => {
          // A restored agent never restarted, so it sends no notice: the machine probed it.
          if (mode.kind === "boot") {
            await waitForAgent(state, paths, readyNotice!.line, probe(), signal);
          }
          readyNotice?.close();
          writeFileSync(paths.readyFile, "");
          state = { ...state, state: "ready", readyAt: new Date().toISOString() };
          saveRecord(rt.events, state, paths);
          machine?.dispose();
        },
      },
    ]);
    return state;
  } catch (caught) {
    // Ctrl-C or an AbortSignal is kind `cancelled`, whichever layer noticed it first.
    const err = signal?.aborted === true && !isCorralError(caught) ? cancelled(signal) : caught;
    if (!starting) throw err;
    rt.guests.forget(paths.vsockSocket);
    const exit = readVmmExit(paths);
    releaseResources(paths);
    const aborted = signal?.aborted === true;
    const reason = aborted
      ? "start interrupted"
      : (exit?.reason ?? (err instanceof Error ? err.message : String(err)));
    saveRecord(
      rt.events,
      {
        ...state,
        state: aborted ? "stopped" : "failed",
        desired: "stopped",
        reason,
        stoppedAt: new Date().toISOString(),
      },
      paths,
    );
    if (aborted || isCorralError(err, "NOT_READY")) throw err;
    throw new CorralError("VM_FAILED", `VM "${record.name}" failed to start: ${reason}`, {
      hint: failureHint(paths),
      cause: err,
    });
  }
}

function killSession(leader: number): void {
  try {
    process.kill(-leader, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * The NoCloud seed: user-data from the spec plus the step that installs corral's agent,
 * meta-data with an instance-id that changes only when the user-data does (cloud-init then
 * re-runs its per-instance modules), rewritten at every start.
 */
async function writeCloudInitSeed(record: VmRecord, paths: InstancePaths): Promise<void> {
  const agentBinary = await readFile(await buildAgent());
  // Loaded on use: the seed builder pulls in the YAML library, which only cloud images need.
  const { writeSeed } = await import("../images/cloud-init/seed.js");
  writeSeed(paths.seed, {
    vmId: record.id,
    hostname: record.name,
    spec: record.spec.cloudInit ?? parseCloudInit({}),
    agentBinary,
  });
}
