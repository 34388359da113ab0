/**
 * A per-VM lock file so two CLI processes can't corrupt one VM. Holds "pid starttime"; a lock
 * whose holder is gone (crashed CLI) is taken over.
 *
 * Taking over is where two processes can both win: both see the holder dead, the first
 * removes the stale file and creates its own, and the second, still acting on what it saw,
 * removes that fresh lock and creates its own. So the removal of a stale lock is claimed
 * first: only the process that creates `<lock>.stale-<hash of the stale content>` exclusively
 * may remove the lock, and only after checking it still holds that content (which nobody can
 * write again: its writer is dead). A second taker finds the claim and backs off, or comes
 * after it and finds the lock no longer stale. A claim whose claimer died is stale in turn
 * and is removed the same way, one level down.
 *
 * Lock and claim files are written in full under a temporary name and linked into place
 * (link(2) fails if the name exists), so nobody ever reads a half-written holder.
 */
import { createHash, randomBytes } from "node:crypto";
import { linkSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError } from "../errors.js";
import { defaultProcessTable } from "./process.js";
import { isAlive, type ProcessTable, startTimeOf } from "./processes.js";

export type Release = () => void;

export interface LockOptions {
  /** Whose processes decide whether a holder is alive: the host's unless a test passes one. */
  table?: ProcessTable;
  /** The pid recorded as the holder: this process unless a test simulates another. */
  pid?: number;
}

/** Claims of claims, at most: each level needs a taker that died within microseconds. */
const MAX_CLAIM_DEPTH = 3;

/** Takes the lock only if it is free right now (stale locks count as free). */
export function tryLock(path: string, what = path, options: LockOptions = {}): Release | undefined {
  return takeFreeOrStale(path, what, options);
}

export async function acquireLock(
  path: string,
  what: string,
  timeoutMs = 30_000,
  options: LockOptions = {},
): Promise<Release> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const release = takeFreeOrStale(path, what, options);
    if (release !== undefined) return release;
    if (Date.now() > deadline) {
      throw new CorralError("VM_LOCKED", `${what} is busy: another corral command holds its lock`, {
        hint: `wait for the other command to finish; if none is running, remove ${path}`,
      });
    }
    await sleep(20);
  }
}

/** The claim a taker of `path` creates before removing it while it holds `stale`. */
export function staleClaimPath(path: string, stale: string): string {
  return `${path}.stale-${createHash("sha256").update(stale).digest("hex").slice(0, 12)}`;
}

/** One attempt: create the lock file exclusively, taking over a dead holder's lock. */
function takeFreeOrStale(path: string, what: string, options: LockOptions): Release | undefined {
  const table = options.table ?? defaultProcessTable();
  const pid = options.pid ?? process.pid;
  const me = `${pid} ${startTimeOf(table, pid) ?? ""}`;
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (createExclusive(path, me)) return releaser(path, me);
      const holder = readHolder(path);
      if (holder === undefined) continue; // released meanwhile: try again
      if (!holderIsGone(holder, table)) return undefined;
      if (removeStale(path, holder, me, table, 0) === "busy") return undefined;
    }
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CorralError("VM_NOT_FOUND", `${what} no longer exists`, {
        hint: 'it was removed meanwhile; list VMs with "corral ls"',
      });
    }
    throw err;
  }
}

function releaser(path: string, me: string): Release {
  let released = false;
  // Idempotent, and only ever removes our own lock: a second call, or a call after the
  // lock was taken over, must not free someone else's.
  return () => {
    if (released) return;
    released = true;
    if (readHolder(path) === me) rmSync(path, { force: true });
  };
}

/**
 * Removes `path` if it still holds `stale`. "removed": gone now, create it; "busy": another
 * process is taking it over (or has); "retry": a dead taker's claim was cleared, look again.
 */
function removeStale(
  path: string,
  stale: string,
  me: string,
  table: ProcessTable,
  depth: number,
): "removed" | "busy" | "retry" {
  const claim = staleClaimPath(path, stale);
  if (!createExclusive(claim, me)) {
    const claimer = readHolder(claim);
    if (claimer === undefined) return "retry"; // that taker just finished
    if (depth + 1 >= MAX_CLAIM_DEPTH || !holderIsGone(claimer, table)) return "busy";
    return removeStale(claim, claimer, me, table, depth + 1) === "removed" ? "retry" : "busy";
  }
  try {
    // Only a taker holding this claim removes `stale`, and its writer is dead: if the file
    // still holds it now, it holds it until we remove it.
    if (readHolder(path) !== stale) return "busy";
    rmSync(path, { force: true });
    return "removed";
  } finally {
    rmSync(claim, { force: true });
  }
}

/** Creates `path` holding `content`, complete, or returns false if it exists. */
function createExclusive(path: string, content: string): boolean {
  const temp = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(temp, content, { flag: "wx", mode: 0o600 });
  try {
    linkSync(temp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    // A file system without hard links: an exclusive create is atomic too, only not its content.
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP") {
      return writeExclusive(path, content);
    }
    throw err;
  } finally {
    rmSync(temp, { force: true });
  }
}

function writeExclusive(path: string, content: string): boolean {
  try {
    writeFileSync(path, content, { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

function readHolder(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined; // removed meanwhile (or the VM directory is gone)
  }
}

function holderIsGone(content: string, table: ProcessTable): boolean {
  const [pidText, startTime] = content.split(" ");
  const pid = Number(pidText);
  // Empty: an older corral between creating and writing it. Garbage: nobody holds it.
  if (!Number.isInteger(pid) || pid <= 0) return content.length > 0;
  return !isAlive(table, pid, startTime === "" ? undefined : startTime);
}
