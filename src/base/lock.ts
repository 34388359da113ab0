/**
 * A per-VM lock file so two CLI processes can't corrupt one VM. Holds "pid starttime"; a lock
 * whose holder is gone (crashed CLI) is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError } from "../errors.js";
import { isAlive, processStartTime } from "./process.js";

export type Release = () => void;

/** Takes the lock only if it is free right now (stale locks count as free). */
export function tryLock(path: string, what = path): Release | undefined {
  return takeFreeOrStale(path, what);
}

export async function acquireLock(
  path: string,
  what: string,
  timeoutMs = 30_000,
): Promise<Release> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const release = takeFreeOrStale(path, what);
    if (release !== undefined) return release;
    if (Date.now() > deadline) {
      throw new CorralError("VM_LOCKED", `${what} is busy: another corral command holds its lock`, {
        hint: `wait for the other command to finish; if none is running, remove ${path}`,
      });
    }
    await sleep(20);
  }
}

/** One attempt: create the lock file exclusively, taking over a dead holder's lock once. */
function takeFreeOrStale(path: string, what: string): Release | undefined {
  const me = `${process.pid} ${processStartTime(process.pid) ?? ""}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, me);
      closeSync(fd);
      let released = false;
      // Idempotent, and only ever removes our own lock: a second call, or a call after the
      // lock was taken over, must not free someone else's.
      return () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(path, "utf8") === me) rmSync(path, { force: true });
        } catch {
          // already gone (the VM directory was removed)
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new CorralError("VM_NOT_FOUND", `${what} no longer exists`, {
          hint: 'it was removed meanwhile; list VMs with "corral ls"',
        });
      }
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if (!holderIsGone(path)) return undefined;
    rmSync(path, { force: true });
  }
  return undefined;
}

function holderIsGone(path: string): boolean {
  let content: string;
  try {
    content = readFileSync(path, "utf8");
  } catch {
    return false; // released meanwhile: the next openSync decides
  }
  const [pidText, startTime] = content.split(" ");
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return content.length > 0;
  return !isAlive(pid, startTime === "" ? undefined : startTime);
}
