/**
 * Host side of the per-VM shim (native/vmm-shim.c): spawns it detached so the VM outlives
 * the CLI, and reads what it reports (pids, and how the VMM exited).
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { z } from "zod";
import type { LaunchPlan } from "../drivers/driver.js";
import { CorralError } from "../errors.js";
import type { InstancePaths } from "../paths/layout.js";

const shimStateSchema = z.object({
  shimPid: z.number().int().positive(),
  vmmPid: z.number().int().positive(),
  sidecarPid: z.number().int().positive().nullable(),
  /** Absent in shims before 0.2: such a sidecar is left to PDEATHSIG. */
  sidecarStartTime: z.string().nullable().optional(),
  vmmStartTime: z.string(),
});
export type ShimState = z.output<typeof shimStateSchema>;

const exitSchema = z.object({
  /** null when the VMM never started (sidecar failure, exec failure). */
  vmm: z
    .object({ exitCode: z.number().int().nullable(), signal: z.number().int().nullable() })
    .nullable(),
  reason: z.string(),
  stopRequested: z.boolean().optional(),
  atMs: z.number(),
});
export type VmmExit = z.output<typeof exitSchema>;

function readJson<T>(path: string, schema: z.ZodType<T>): T | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const parsed = schema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // written atomically, so a parse failure means a foreign file: ignore
  }
}

export const readShimState = (paths: InstancePaths) => readJson(paths.shimState, shimStateSchema);
export const readVmmExit = (paths: InstancePaths) => readJson(paths.exitFile, exitSchema);

export interface ShimLaunch {
  shimPath: string;
  plan: LaunchPlan;
  paths: InstancePaths;
  readyTimeoutMs: number;
}

/** The descriptor number the VMM gets the plan's `vmmFd` as (the first after stdio). */
export const VMM_FD = 3;

/**
 * Starts the shim in its own session; returns its pid. The shim forks sidecar and VMM. The
 * new session is also a new process group, led by the shim: on macOS the shim's watcher
 * kills that group when the shim dies, so it must not be the caller's.
 */
export function launchShim({ shimPath, plan, paths, readyTimeoutMs }: ShimLaunch): number {
  const { vmmFd } = plan;
  const args = [
    "--state-file",
    paths.shimState,
    "--exit-file",
    paths.exitFile,
    "--ready-file",
    paths.readyFile,
    "--ready-timeout-ms",
    String(readyTimeoutMs),
  ];
  // Options first: --sidecar takes every word up to --vmm.
  if (vmmFd !== undefined) args.push("--vmm-fd", String(VMM_FD));
  for (const helper of plan.helpers ?? []) {
    args.push("--aux", helper.readyPath, helper.readOnlyDir ?? "-", ...helper.argv, "--aux-end");
  }
  if (plan.sidecar !== undefined) {
    args.push("--sidecar-wait-path", plan.sidecar.readyPath, "--sidecar", ...plan.sidecar.argv);
  }
  args.push("--vmm", ...plan.vmm.argv);
  const log = openSync(paths.shimLog, "a", 0o600);
  try {
    const child = spawn(shimPath, args, {
      detached: true,
      stdio: vmmFd === undefined ? ["ignore", log, log] : ["ignore", log, log, vmmFd],
      cwd: paths.dir,
    });
    child.unref();
    if (child.pid === undefined) {
      throw new CorralError("VM_FAILED", `could not start the VM's shim ${shimPath}`);
    }
    return child.pid;
  } finally {
    closeSync(log);
  }
}
