/**
 * The instance store: one directory per VM under the state root, claimed exclusively at
 * create, read and reconciled by every command, locked while a command changes it, and
 * removed out of sight (renamed first) so a waiting command never finds half a VM.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { acquireLock, tryLock } from "../base/lock.js";
import { CorralError } from "../errors.js";
import {
  doomedInstanceDir,
  type InstancePaths,
  instanceFiles,
  instancePaths,
  vmsRoot,
} from "../paths/layout.js";
import { NAME_PATTERN } from "../spec/schema.js";
import type { VmEvents } from "./events.js";
import { reconcile } from "./reconcile.js";
import { ACTIVE_STATES, readRecord, type VmRecord, writeRecord } from "./record.js";

export interface LoadedVm {
  record: VmRecord;
  paths: InstancePaths;
}

function notFound(name: string): CorralError {
  return new CorralError("VM_NOT_FOUND", `no VM named "${name}"`, {
    hint: 'list VMs with "corral ls"',
  });
}

/** The VM's record as last written (not reconciled) and its paths. */
export function loadVm(name: string): LoadedVm {
  if (!NAME_PATTERN.test(name)) throw notFound(name);
  const files = instanceFiles(name);
  if (!existsSync(files.config)) throw notFound(name);
  const record = readRecord(files.config, name);
  return { record, paths: instancePaths(name, record.id) };
}

export function listVmNames(): string[] {
  try {
    return readdirSync(vmsRoot())
      .filter((name) => NAME_PATTERN.test(name))
      .sort();
  } catch {
    return [];
  }
}

/**
 * Runs `act` with the VM locked and its record reconciled with the live processes: the one
 * place commands that change a VM take its lock.
 */
export async function withLockedVm<T>(name: string, act: (vm: LoadedVm) => Promise<T>): Promise<T> {
  const { paths } = loadVm(name);
  const release = await acquireLock(paths.lock, `VM "${name}"`);
  try {
    return await act({ record: reconcile(readRecord(paths.config, name), paths), paths });
  } finally {
    release();
  }
}

/**
 * Reconciles for a read-only command. Persists only when the VM's lock is free: a command
 * holding it (a stop in progress) owns the record, and a concurrent write would clobber it.
 */
export function observe({ record, paths }: LoadedVm): VmRecord {
  if (!ACTIVE_STATES.includes(record.state)) return record;
  const release = tryLock(paths.lock);
  if (release === undefined) return record;
  try {
    return reconcile(readRecord(paths.config, record.name), paths);
  } finally {
    release();
  }
}

/** Writes the record and tells listeners about the state it is in. */
export function saveRecord(events: VmEvents, record: VmRecord, paths: InstancePaths): void {
  writeRecord(paths.config, record);
  events.emit({ type: "state", name: record.name, state: record.state, reason: record.reason });
}

/** Creates a new VM's instance directory; the name is taken if the directory exists. */
export function claimInstanceDir(name: string, hint: string): { id: string; paths: InstancePaths } {
  mkdirSync(vmsRoot(), { recursive: true, mode: 0o700 });
  const id = randomBytes(6).toString("hex");
  const paths = instancePaths(name, id);
  try {
    mkdirSync(paths.dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new CorralError("VM_EXISTS", `a VM named "${name}" already exists`, { hint });
    }
    throw err;
  }
  return { id, paths };
}

/** Out of sight first (while still locked), then deleted. */
export function removeInstanceDir(paths: InstancePaths, id: string): void {
  const doomed = doomedInstanceDir(id);
  renameSync(paths.dir, doomed);
  rmSync(doomed, { recursive: true, force: true });
}

/** A create killed before it wrote vm.json leaves only its directory: true if it removed one. */
export function removeUnfinishedCreate(name: string): boolean {
  const files = instanceFiles(name);
  if (!NAME_PATTERN.test(name) || !existsSync(files.dir) || existsSync(files.config)) return false;
  rmSync(files.dir, { recursive: true, force: true });
  return true;
}

export function generateName(): string {
  return `vm-${randomBytes(3).toString("hex")}`;
}
