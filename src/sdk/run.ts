/**
 * `run` = create + start + exec + stop (+ remove), the `docker run` of corral. The command is
 * the VM's main process: when it ends the VM stops, and with `rm` it is removed. Aborting
 * (Ctrl-C in the CLI) kills the command and the VM; nothing keeps running behind the user.
 */
import { constants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { takeFromPool } from "../daemon/pool-client.js";
import { CorralError, cancelled, isCorralError, throwIfCancelled } from "../errors.js";
import { DEFAULT_IMAGE_NAME } from "../images/default-image.js";
import { findOciImage, type PullOptions, pullImage } from "../images/oci-store.js";
import type { VmSpecInput } from "../spec/schema.js";
import type { Manager, VmInfo } from "../vm/manager.js";

export interface RunOptions {
  spec: Partial<VmSpecInput>;
  /** Restore this snapshot instead of creating and booting a VM (spec: only `name`). */
  fromSnapshot?: string;
  /** Take a ready VM from this warm pool (it is always removed afterwards). */
  fromPool?: string;
  /** The command; empty runs the image's Entrypoint + Cmd. */
  argv: string[];
  /** How to pull `spec.image` when it is an OCI image not pulled yet. */
  pull?: PullOptions;
  /** Environment for the command (the spec's env applies too). */
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  /** Remove the VM afterwards. */
  rm?: boolean;
  signal?: AbortSignal;
  /** Called once the VM is ready (the CLI uses it for timing and names). */
  onReady?: (vm: VmInfo) => void;
}

export interface RunResult {
  name: string;
  exitCode: number | null;
  signal: string | null;
  /** A shell-style status: the exit code, or 128 + signal number. */
  status: number;
}

export async function runInVm(manager: Manager, options: RunOptions): Promise<RunResult> {
  try {
    return await run(manager, options);
  } catch (err) {
    // A dependency (a stream, undici) may notice the abort first and throw the bare reason
    // (a DOMException for `controller.abort()`): callers get a CANCELLED CorralError instead.
    if (options.signal?.aborted === true && !isCorralError(err)) throw cancelled(options.signal);
    throw err;
  }
}

async function run(manager: Manager, options: RunOptions): Promise<RunResult> {
  const image = options.spec.image;
  if (image !== undefined && image !== DEFAULT_IMAGE_NAME && findOciImage(image) === undefined) {
    await pullImage(image, options.pull ?? {});
  }
  throwIfCancelled(options.signal);
  let ready: VmInfo;
  let rm = options.rm === true;
  if (options.fromPool !== undefined) {
    const taken = await takeFromPool(options.fromPool);
    try {
      ready = await manager.inspect(taken);
      // The daemon's answer names a VM: run only in one that is this pool's, handed to us.
      if (ready.pool?.name !== options.fromPool || ready.pool.taken !== true) {
        throw new CorralError(
          "POOL_MISMATCH",
          `the daemon handed out "${taken}", not a member of pool "${options.fromPool}"`,
        );
      }
    } catch (err) {
      if (!isCorralError(err, "POOL_MISMATCH"))
        await manager.remove(taken, { force: true }).catch(() => {});
      throw err;
    }
    rm = true;
  } else if (options.fromSnapshot !== undefined) {
    // restore removes a VM that did not become ready itself.
    ready = await manager.restore(options.fromSnapshot, {
      name: options.spec.name,
      signal: options.signal,
    });
  } else {
    const vm = await manager.create(
      options.spec,
      options.signal === undefined ? {} : { signal: options.signal },
    );
    try {
      ready = await manager.start(vm.name, { signal: options.signal });
    } catch (err) {
      // run created this VM; one that never became ready is of no use to keep (the error
      // carries the serial console's tail).
      await manager.remove(vm.name, { force: true }).catch(() => {});
      throw err;
    }
  }
  const name = ready.name;
  try {
    options.onReady?.(ready);
    const argv = await manager.commandFor(name, options.argv);
    if (argv.length === 0) {
      throw new CorralError("INVALID_ARGUMENT", "no command to run", {
        hint: "the image has no Entrypoint or Cmd: put a command after --",
      });
    }
    const proc = await manager.exec(name, {
      argv,
      env: options.env,
      cwd: options.cwd,
      user: options.user,
      stdin: options.stdin,
    });
    const onAbort = () => proc.kill("SIGKILL");
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    try {
      const [result] = await Promise.all([
        proc.result,
        pipeline(proc.stdout, options.stdout, { end: false }),
        pipeline(proc.stderr, options.stderr, { end: false }),
      ]);
      throwIfCancelled(options.signal);
      const signo =
        result.signal === null ? 0 : (constants.signals[result.signal as NodeJS.Signals] ?? 0);
      const status = result.exitCode ?? 128 + signo;
      return { name, exitCode: result.exitCode, signal: result.signal, status };
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  } finally {
    await finish(manager, name, rm);
  }
}

async function finish(manager: Manager, name: string, rm: boolean): Promise<void> {
  try {
    // Nothing in the VM outlives the command with --rm, so there is nothing to shut down cleanly.
    if (rm) await manager.remove(name, { force: true });
    else await manager.stop(name, { timeoutMs: 5_000 });
  } catch (err) {
    if (!isCorralError(err, "VM_NOT_FOUND")) throw err;
  }
}
