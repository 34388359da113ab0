/**
 * The Manager: lifecycle of VMs (create, start, stop, kill, rm, exec) on top of one Driver.
 * Stateless between calls: every method reads the instance directory, reconciles it with
 * the live processes, acts under the VM's lock, and writes the record back atomically.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  constants as fsConstants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { copyFile, readFile } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { acquireLock, tryLock } from "../base/lock.js";
import { isAlive, signalProcess } from "../base/process.js";
import { serialTail } from "../base/tail.js";
import { type Driver, unsupported, type VmContext } from "../drivers/driver.js";
import { chooseAccelerator } from "../drivers/qemu/accel.js";
import { createEmptyDisk, createOverlay, probeDiskFormat } from "../drivers/qemu/disks.js";
import { QemuDriver } from "../drivers/qemu/driver.js";
import {
  hashDescriptor,
  receiveToFile,
  type StreamDigest,
} from "../drivers/qemu/migration-stream.js";
import { CorralError, isCorralError } from "../errors.js";
import { applyImageConfig, commandFor, egressProxyEnv } from "../guest/exec-defaults.js";
import { buildVmmShim } from "../host/vmm-shim-binary.js";
import { buildAgent } from "../images/agent-binary.js";
import { DEFAULT_IMAGE_NAME, findDefaultImage } from "../images/default-image.js";
import type { ImageInfo } from "../images/image-info.js";
import { findOciImage, type OciImage } from "../images/oci-store.js";
import {
  ensurePrivateDir,
  type InstancePaths,
  instancePaths,
  snapshotPaths,
  snapshotsRoot,
  switchLockPath,
  vmsRoot,
} from "../paths/layout.js";
import {
  AgentClient,
  type ExecProcess,
  type ExecRequest,
  type KeptConnectionsOptions,
} from "../protocols/agent/client.js";
import { AGENT_READY_PORT, AGENT_VSOCK_PORT } from "../protocols/agent/ports.js";
import { connectVsock } from "../protocols/hybrid-vsock/connect.js";
import { firstGuestLine } from "../protocols/hybrid-vsock/listen.js";
import { parseCloudInit } from "../spec/cloud-init.js";
import { checkMountSource } from "../spec/mounts.js";
import { parseNetworkMode } from "../spec/network.js";
import {
  NAME_PATTERN,
  parseSpec,
  readyTimeoutOf,
  type VmSpec,
  type VmSpecInput,
} from "../spec/schema.js";
import { allocateSwitchAddress, checkHostResources, prepareTap } from "./network.js";
import { reconcile, releaseResources } from "./reconcile.js";
import { ACTIVE_STATES, readRecord, type VmRecord, type VmState, writeRecord } from "./record.js";
import { type HostServices, needsHostServices, noHostServices } from "./services.js";
import {
  checkSnapshotName,
  damaged,
  listSnapshots,
  readSnapshotMeta,
  removeSnapshot,
  SNAPSHOT_FORMAT,
  type SnapshotMeta,
  sha256File,
  verifySnapshotFiles,
  writeSnapshotMeta,
} from "./snapshot-store.js";
import { diskCounters, parseMeminfo, parseNetDev, processUsage, type VmStats } from "./stats.js";
import { launchShim, readShimState, readVmmExit, VMM_FD } from "./supervisor.js";

export type ManagerEvent =
  | { type: "state"; name: string; state: VmState; reason?: string }
  | { type: "notice"; message: string };

export interface ManagerOptions {
  driver?: Driver;
  /** Who serves port forwards, egress and switch ports (the SDK entry passes the daemon). */
  services?: HostServices;
  onEvent?: (event: ManagerEvent) => void;
}

export interface VmInfo extends VmRecord {
  pids?: { shim: number; vmm: number; sidecar: number | null };
  paths: InstancePaths;
}

export interface StopOptions {
  /** Milliseconds to wait for a graceful shutdown before killing. */
  timeoutMs?: number;
}

const GUEST_CID = 3; // the sidecar is per VM, so CIDs need not be unique across VMs
const SHIM_REPORT_TIMEOUT_MS = 10_000;
const AGENT_RETRY_MS = 5;
/** How long a freshly plugged guest channel may stay silent before it is plugged again. */
const PLUGGED_ANSWER_MS = 20_000;
/**
 * exec() and agent() keep a few idle agent connections per VM: a warm guest handler saves a
 * process start per command (docs/agent-protocol.md, keep=1). Idle ones never hold the
 * process open and close well before the agent's own 120 s limit.
 */
export const AGENT_KEEP_ALIVE = { idleMs: 10_000, max: 4 };

export class Manager {
  private readonly driver: Driver;
  private readonly services: HostServices;
  private readonly emit: (event: ManagerEvent) => void;
  /** By vsock socket path; `life` is the VM's startedAt, so a restarted VM gets new ones. */
  private readonly keptAgents = new Map<string, { life: string; client: AgentClient }>();

  constructor(options: ManagerOptions = {}) {
    this.driver = options.driver ?? new QemuDriver();
    this.services = options.services ?? noHostServices;
    this.emit = options.onEvent ?? (() => {});
  }

  /** Validates the spec and records a stopped VM. Nothing is left behind when it fails. */
  async create(input: Partial<VmSpecInput>, options: { pool?: string } = {}): Promise<VmInfo> {
    const spec = parseSpec({ ...input, name: input.name ?? generateName() });
    this.driver.validate(spec);
    const image = resolveBootImage();
    const oci = spec.image === DEFAULT_IMAGE_NAME ? undefined : resolveOciImage(spec.image);
    if (spec.diskSizeMiB !== undefined && oci === undefined && spec.cloudImage === undefined) {
      throw new CorralError("INVALID_SPEC", "diskSizeMiB: the built-in image has no root disk", {
        hint: "--disk-size sizes an image's root disk; use --disk 10G for an extra disk",
      });
    }
    for (const [field, flag] of [
      ["kernel", "--kernel"],
      ["initrd", "--initrd"],
      ["cdrom", "--cdrom"],
    ] as const) {
      const path = spec[field];
      if (path !== undefined && !existsSync(path)) {
        throw new CorralError("INVALID_SPEC", `${field}: ${path} does not exist`, {
          hint: `check the path given to ${flag}`,
        });
      }
    }
    await checkHostResources(spec);
    const network = parseNetworkMode(spec.network);
    if (network.kind !== "switch" || spec.ip !== undefined) {
      return this.createRecord(spec, image, oci, spec.ip, options.pool);
    }
    // Two creates on one switch must not pick the same address.
    const release = await acquireLock(switchLockPath(network.name), `switch "${network.name}"`);
    try {
      return await this.createRecord(
        spec,
        image,
        oci,
        allocateSwitchAddress(network.name),
        options.pool,
      );
    } finally {
      release();
    }
  }

  private async createRecord(
    spec: VmSpec,
    image: ImageInfo,
    oci: OciImage | undefined,
    guestIp: string | undefined,
    pool: string | undefined,
  ): Promise<VmInfo> {
    const { id, paths } = claimInstanceDir(
      spec.name,
      `choose another --name, or remove it with "corral rm -f ${spec.name}"`,
    );
    try {
      const record: VmRecord = {
        version: 1,
        id,
        name: spec.name,
        spec,
        state: "stopped",
        reason: "created",
        image: {
          name: image.name,
          version: image.version,
          digest: image.digest,
          kernel: image.kernel,
          initrd: image.initrd,
          cmdline: image.cmdline,
        },
        guestCid: GUEST_CID,
        ...(guestIp === undefined ? {} : { guestIp }),
        ...(pool === undefined ? {} : { pool: { name: pool, taken: false } }),
        desired: "stopped",
        createdAt: new Date().toISOString(),
        disks: await prepareDisks(spec.disks, paths.dir),
      };
      if (spec.cloudImage !== undefined) {
        const baseFormat = await probeDiskFormat(spec.cloudImage, "cloudImage (--cloud-image)");
        const overlay = join(paths.dir, "root.qcow2");
        await createOverlay(spec.cloudImage, overlay, spec.diskSizeMiB, baseFormat);
        record.cloudDisk = { base: spec.cloudImage, baseFormat, overlay };
      }
      if (spec.firmware === "uefi") {
        if (this.driver.createFirmwareStore === undefined) {
          throw unsupported(this.driver.capabilities.backend, "UEFI firmware");
        }
        await this.driver.createFirmwareStore(paths.efiVars);
      }
      if (oci !== undefined) {
        const overlay = join(paths.dir, "root.qcow2");
        await createOverlay(oci.rootfs, overlay, spec.diskSizeMiB);
        record.rootDisk = {
          reference: oci.reference,
          manifestDigest: oci.manifestDigest,
          base: oci.rootfs,
          overlay,
        };
        record.imageConfig = oci.config;
      }
      writeRecord(paths.config, record);
      return this.info(record, paths);
    } catch (err) {
      rmSync(paths.dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Copies a stopped VM: its spec, root overlay and owned disks (reflinked where the
   * filesystem can, else copied; qcow2 files hold only what was written). Disks the source
   * merely attaches by path are attached by the clone too.
   */
  async clone(source: string, target: string): Promise<VmInfo> {
    const { paths: from } = this.load(source);
    const release = await acquireLock(from.lock, `VM "${source}"`);
    try {
      const record = reconcile(readRecord(from.config, source), from);
      if (record.state !== "stopped" && record.state !== "failed") {
        throw new CorralError("VM_STATE", `VM "${source}" is ${record.state}`, {
          hint: `stop it first: a running VM's disks are not consistent ("corral stop ${source}")`,
        });
      }
      const spec = parseSpec({ ...record.spec, name: target });
      if (spec.mac !== undefined || (record.guestIp !== undefined && spec.ip !== undefined)) {
        throw new CorralError("VM_STATE", `VM "${source}" has a fixed MAC or address`, {
          hint: "a clone would share it on the network; create a new VM instead",
        });
      }
      const network = parseNetworkMode(spec.network);
      const { id, paths: to } = claimInstanceDir(spec.name, "choose another name for the clone");
      try {
        const moved = (path: string) => join(to.dir, relative(from.dir, path));
        const copy = async (path: string) => {
          await copyFile(path, moved(path), fsConstants.COPYFILE_FICLONE);
          return moved(path);
        };
        const clone: VmRecord = {
          ...record,
          id,
          name: spec.name,
          spec,
          ...newLife(`cloned from ${source}`),
          // Not a pool member, and its own address on a switch.
          pool: undefined,
          guestIp:
            network.kind === "switch" && spec.ip === undefined
              ? allocateSwitchAddress(network.name)
              : undefined,
          rootDisk:
            record.rootDisk === undefined
              ? undefined
              : { ...record.rootDisk, overlay: await copy(record.rootDisk.overlay) },
          cloudDisk:
            record.cloudDisk === undefined
              ? undefined
              : { ...record.cloudDisk, overlay: await copy(record.cloudDisk.overlay) },
          disks: [],
        };
        for (const disk of record.disks) {
          clone.disks.push(disk.owned ? { ...disk, path: await copy(disk.path) } : disk);
        }
        if (existsSync(from.efiVars)) await copy(from.efiVars);
        writeRecord(to.config, clone);
        return this.info(clone, to);
      } catch (err) {
        rmSync(to.dir, { recursive: true, force: true });
        throw err;
      }
    } finally {
      release();
    }
  }

  /** Boots the VM and waits until its agent answers. A VM that never answers is killed. */
  async start(name: string, options: { signal?: AbortSignal } = {}): Promise<VmInfo> {
    const { paths } = this.load(name);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      const current = reconcile(readRecord(paths.config, name), paths);
      if (ACTIVE_STATES.includes(current.state)) {
        throw new CorralError("VM_STATE", `VM "${name}" is already ${current.state}`, {
          hint: `stop it first with "corral stop ${name}"`,
        });
      }
      return await this.boot(current, paths, options.signal);
    } finally {
      release();
    }
  }

  private async boot(
    record: VmRecord,
    paths: InstancePaths,
    signal?: AbortSignal,
    restore?: SnapshotMeta,
  ): Promise<VmInfo> {
    const accel = chooseAccelerator(record.spec.accel);
    if (record.spec.accel === "auto" && accel.accel === "tcg") {
      this.emit({ type: "notice", message: `using TCG software emulation: ${accel.reason}` });
    }
    const vm: VmContext = {
      ...this.context(record, paths),
      accel: accel.accel,
      ...(restore === undefined ? {} : { incomingFd: VMM_FD }),
    };
    // Shared folders may have gone since the VM was created: say so before booting.
    for (const [i, mount] of record.spec.mounts.entries()) {
      checkMountSource(mount, `mounts[${i}] (-v)`);
    }
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

    if (vm.seed !== undefined) await writeCloudInitSeed(record, paths);
    const plan = await this.driver.plan(vm);
    const shimPath = await buildVmmShim();
    prepareTap(record.spec, paths);
    let state: VmRecord = {
      ...record,
      state: "starting",
      reason: undefined,
      accel,
      desired: "running",
      startedAt: new Date().toISOString(),
      readyAt: undefined,
      stoppedAt: undefined,
    };
    const readyNotice = await firstGuestLine(
      paths.vsockSocket,
      AGENT_READY_PORT,
      /^READY \S+ \d+$/,
    );
    this.save(state, paths);
    let shimPid: number | undefined;
    let attached = false;
    // A restore's memory file: QEMU reads it through its copy, corral hashes this one.
    let memoryFd: number | undefined;
    const hashing = new AbortController();
    try {
      if (restore !== undefined) memoryFd = openMemoryFile(restore);
      signal?.throwIfAborted();
      if (needsHostServices(record.spec)) {
        // Forwards bind here: a port taken since create fails the start before any boot.
        attached = true;
        await this.services.attach(record.name);
      }
      shimPid = launchShim({
        shimPath,
        plan,
        paths,
        // The shim's watchdog is the backstop if this process dies mid-boot.
        readyTimeoutMs: readyTimeoutOf(record.spec) + 5_000,
        vmmFd: memoryFd,
      });
      // Hashing starts with the VMM's load, on the same open file, so both see the same bytes.
      const memoryHash =
        memoryFd === undefined ? undefined : hashDescriptor(memoryFd, hashing.signal);
      memoryFd = undefined;
      memoryHash?.catch(() => {});
      await this.waitForShim(paths, signal);
      await this.driver.afterLaunch(vm, signal);
      // Kept connections: the first commands after ready find a warm guest handler.
      const agent = this.keptAgent({ record: state, paths });
      if (restore !== undefined && memoryHash !== undefined) {
        // A restored agent never restarted, so it sends no notice: the plug pings it.
        await this.loadSnapshot(vm, restore, memoryHash, agent, signal);
      }
      state = { ...state, state: "running" };
      this.save(state, paths);
      if (restore === undefined)
        await this.waitForAgent(state, paths, readyNotice.line, agent, signal);
      readyNotice.close();

      writeFileSync(paths.readyFile, "");
      state = { ...state, state: "ready", readyAt: new Date().toISOString() };
      this.save(state, paths);
      return this.info(state, paths);
    } catch (err) {
      readyNotice.close();
      if (memoryFd !== undefined) closeSync(memoryFd);
      hashing.abort();
      this.forgetAgent(paths.vsockSocket);
      if (attached) await this.services.detach(record.name).catch(() => {});
      // The VMM may be dying right now: give the shim a moment to record why.
      const exit =
        readVmmExit(paths) ??
        (await this.waitForExit(paths, 2_000).then(
          () => readVmmExit(paths),
          () => undefined,
        ));
      if (shimPid !== undefined && readShimState(paths) === undefined) {
        // The shim had not reported its children yet: its session holds them all.
        signalGroup(shimPid);
      }
      releaseResources(paths);
      const aborted = signal?.aborted === true;
      const reason = aborted
        ? "start interrupted"
        : (exit?.reason ?? (err instanceof Error ? err.message : String(err)));
      this.save(
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

  /**
   * Waits for the VMM started with `incomingFd` to load the snapshot's state while its hash
   * is checked, then runs the vCPUs (only if the hash matched) and plugs a fresh guest channel
   * (the shim's sidecar is already up).
   */
  private async loadSnapshot(
    vm: VmContext,
    meta: SnapshotMeta,
    memoryHash: Promise<StreamDigest>,
    agent: AgentClient,
    signal?: AbortSignal,
  ) {
    const driver = this.driver;
    if (driver.awaitIncoming === undefined || driver.plugGuestChannel === undefined) {
      throw unsupported(driver.capabilities.backend, "snapshots");
    }
    const matches = (d: StreamDigest | undefined) =>
      d !== undefined && d.sha256 === meta.memory.sha256 && d.size === meta.memory.size;
    const corrupt = () =>
      damaged(meta.name, "memory.bin does not match its SHA-256 (altered or corrupt)");
    try {
      await driver.awaitIncoming(vm, signal);
    } catch (err) {
      // A VMM that choked on the stream: say it is damaged when it is.
      const digest = await memoryHash.catch(() => undefined);
      if (digest !== undefined && !matches(digest)) throw corrupt();
      throw err;
    }
    if (!matches(await memoryHash)) throw corrupt();
    await driver.resume?.(vm);
    await this.plugUntilAnswered(vm, agent);
  }

  /**
   * Saves a ready (or paused) VM's memory, devices and disks as snapshot `snapshot`; the VM
   * goes on running afterwards (paused ones stay paused). Its guest channel is unplugged
   * around the save and plugged in fresh (vhost-user-vsock cannot migrate): agent
   * connections open at that moment are cut.
   */
  async snapshot(name: string, snapshot: string): Promise<SnapshotMeta> {
    checkSnapshotName(snapshot);
    const target = snapshotPaths(snapshot);
    if (existsSync(target.dir)) {
      throw new CorralError("SNAPSHOT", `a snapshot named "${snapshot}" already exists`, {
        hint: `choose another name, or remove it with "corral snapshot rm ${snapshot}"`,
      });
    }
    const driver = this.driver;
    if (
      driver.saveState === undefined ||
      driver.unplugGuestChannel === undefined ||
      driver.pause === undefined ||
      driver.resume === undefined
    ) {
      throw unsupported(driver.capabilities.backend, "snapshots");
    }
    const { paths } = this.load(name);
    // The guest channel is replaced during a snapshot: its connections die with it.
    this.forgetAgent(paths.vsockSocket);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      const record = reconcile(readRecord(paths.config, name), paths);
      if (record.state !== "ready" && record.state !== "paused") {
        throw new CorralError("VM_STATE", `VM "${name}" is ${record.state}`, {
          hint: `only a running VM can be snapshotted: "corral start ${name}"`,
        });
      }
      checkSnapshottable(record);
      const vm = this.context(record, paths);
      const vmmVersion = (await driver.version?.()) ?? "unknown";
      mkdirSync(snapshotsRoot(), { recursive: true, mode: 0o700 });
      sweepDeadSnapshotTemps();
      const tmp = join(
        snapshotsRoot(),
        `.tmp-${snapshot}-${process.pid}-${randomBytes(4).toString("hex")}`,
      );
      mkdirSync(tmp, { mode: 0o700 });
      const wasPaused = record.state === "paused";
      let unplugged = false;
      let pausedAt = 0;
      let lost: string | undefined;
      try {
        if (wasPaused) await driver.resume(vm);
        // Set first: a device_del that was accepted but never confirmed still needs the
        // channel put back.
        unplugged = true;
        await driver.unplugGuestChannel(vm);
        await driver.pause(vm);
        pausedAt = Date.now();
        // Paused, and QEMU flushed the disks when it stopped: the copies are consistent
        // with the memory state saved next.
        const rootDisk =
          record.rootDisk === undefined
            ? undefined
            : await frozenCopy(record.rootDisk.overlay, join(tmp, "root.qcow2"));
        const disks: SnapshotMeta["disks"] = [];
        for (const [i, disk] of record.disks.entries()) {
          disks.push(
            disk.owned
              ? { owned: true, ...(await frozenCopy(disk.path, join(tmp, `disk${i}.qcow2`))) }
              : { owned: false, path: disk.path, format: disk.format },
          );
        }
        const sink = await receiveToFile(paths.migrationSocket, join(tmp, "memory.bin"));
        let memory: { sha256: string; size: number };
        try {
          await driver.saveState(vm, paths.migrationSocket);
          memory = await sink.done;
        } finally {
          sink.close();
        }
        const meta: SnapshotMeta = {
          format: SNAPSHOT_FORMAT,
          name: snapshot,
          createdAt: new Date().toISOString(),
          source: { name: record.name, id: record.id },
          vmmVersion,
          record,
          memory: { file: "memory.bin", ...memory },
          ...(rootDisk === undefined ? {} : { rootDisk }),
          disks,
          pausedMs: Date.now() - pausedAt,
        };
        writeSnapshotMeta(tmp, meta);
        renameSync(tmp, target.dir);
        lost = await this.reattachGuestChannel(record, paths, wasPaused);
        unplugged = false;
        if (lost !== undefined) {
          throw new CorralError(
            "VM_FAILED",
            `snapshot "${snapshot}" was saved, but VM "${name}" ${lost}`,
            {
              hint: `the snapshot is complete; restore it with "corral restore ${snapshot}"`,
            },
          );
        }
        return meta;
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        if (unplugged) {
          const reason = await this.reattachGuestChannel(record, paths, wasPaused);
          if (reason !== undefined) {
            throw new CorralError("VM_FAILED", `the snapshot failed and VM "${name}" ${reason}`, {
              cause: err,
            });
          }
        }
        throw err;
      }
    } finally {
      release();
    }
  }

  /**
   * After a save: a fresh sidecar (the old one cannot serve a second device), the vCPUs
   * running again, a new guest channel, the clock set. A VM that cannot get its channel
   * back is of no use: it is killed and recorded as failed. Returns why it was lost, or
   * undefined when it is back.
   */
  private async reattachGuestChannel(
    record: VmRecord,
    paths: InstancePaths,
    keepPaused: boolean,
  ): Promise<string | undefined> {
    const vm = this.context(record, paths);
    try {
      await swapSidecar(paths);
      await this.driver.resume?.(vm);
      await this.plugUntilAnswered(vm, this.keptAgent({ record, paths }));
      if (keepPaused) await this.driver.pause?.(vm);
      return undefined;
    } catch (err) {
      const reason = `lost its guest channel after a snapshot: ${String(err)}; it was killed`;
      await this.finishStop({ ...record, state: "stopping", reason }, paths, true);
      this.save({ ...readRecord(paths.config, record.name), state: "failed", reason }, paths);
      return reason;
    }
  }

  /**
   * Plugs the guest channel into a running VM and waits for the agent to answer, then sets
   * the guest clock. A channel that stays silent (the sidecar wedged: seen with
   * vhost-device-vsock 0.3.0 when connections arrive during driver setup) is unplugged and
   * plugged in again with a fresh sidecar, once.
   */
  private async plugUntilAnswered(vm: VmContext, agent: AgentClient): Promise<void> {
    const driver = this.driver;
    if (driver.plugGuestChannel === undefined || driver.unplugGuestChannel === undefined) {
      throw unsupported(driver.capabilities.backend, "snapshots");
    }
    for (let attempt = 1; ; attempt++) {
      await driver.plugGuestChannel(vm);
      const deadline = Date.now() + PLUGGED_ANSWER_MS;
      let answered = false;
      while (!answered && Date.now() < deadline) {
        // Setting the clock is the probe: one round trip where ping + set_time took two.
        answered = await agent.setTime(Date.now(), { timeoutMs: 2_000 }).then(
          () => true,
          (err) => {
            // The agent answered and refused: that is not a silent channel.
            if (isCorralError(err, "AGENT") && err.details?.guestCode !== undefined) throw err;
            return false;
          },
        );
        if (!answered) await sleep(AGENT_RETRY_MS);
      }
      if (answered) break;
      if (attempt === 2) {
        throw new CorralError("NOT_READY", "the guest agent did not answer on the new channel");
      }
      this.emit({
        type: "notice",
        message: "the guest channel stayed silent: plugging it in again",
      });
      await driver.unplugGuestChannel(vm);
      await swapSidecar(vm.paths);
      agent.dropIdle();
    }
  }

  /**
   * Starts a new VM from a snapshot: its own disk overlays over the snapshot's frozen disks,
   * its own sockets, sidecar and MAC; the guest's RNG reseeds itself (vmgenid changes on every
   * start) and its clock is set. The snapshot is checked first: a damaged or incompatible one
   * leaves no VM behind. Port forwards are not carried over (they would collide with the
   * source's).
   */
  async restore(
    snapshot: string,
    options: { name?: string; signal?: AbortSignal; pool?: string } = {},
  ): Promise<VmInfo> {
    const meta = readSnapshotMeta(snapshot);
    await verifySnapshotFiles(meta, { full: false });
    const vmmVersion = (await this.driver.version?.()) ?? "unknown";
    if (vmmVersion !== meta.vmmVersion) {
      throw new CorralError(
        "SNAPSHOT",
        `snapshot "${snapshot}" was taken with ${meta.vmmVersion}; this host runs ${vmmVersion}`,
        {
          hint: "QEMU's migration format is tied to its version: restore it on a host with the same QEMU, or boot a fresh VM and take a new snapshot",
        },
      );
    }
    if (!existsSync(meta.record.image.kernel) || !existsSync(meta.record.image.initrd)) {
      throw new CorralError(
        "SNAPSHOT",
        `the guest image snapshot "${snapshot}" was taken with (${meta.record.image.version}) is no longer cached`,
        {
          hint: 'the kernel must be the one the memory was saved with; take a new snapshot after "corral setup"',
        },
      );
    }
    const spec = parseSpec({
      ...meta.record.spec,
      name: options.name ?? generateName(),
      ports: [],
    });
    const { id, paths } = claimInstanceDir(
      spec.name,
      `choose another --name, or remove it with "corral rm -f ${spec.name}"`,
    );
    // Locked from its first moment: no other command may start this VM before it is ready,
    // and a failure removes it while still holding the lock.
    const release = await acquireLock(paths.lock, `VM "${spec.name}"`);
    const files = snapshotPaths(snapshot);
    try {
      const record: VmRecord = {
        ...meta.record,
        id,
        name: spec.name,
        spec,
        ...newLife(`restored from snapshot ${snapshot}`),
        disks: [],
        restoredFrom: snapshot,
        pool: options.pool === undefined ? undefined : { name: options.pool, taken: false },
      };
      if (meta.rootDisk !== undefined && meta.record.rootDisk !== undefined) {
        const overlay = join(paths.dir, "root.qcow2");
        await createOverlay(files.disk(meta.rootDisk.file), overlay, undefined, "qcow2");
        record.rootDisk = { ...meta.record.rootDisk, overlay };
      }
      for (const [i, disk] of meta.disks.entries()) {
        if (!disk.owned) {
          record.disks.push({ path: disk.path, format: disk.format, readOnly: true, owned: false });
          continue;
        }
        const overlay = join(paths.dir, `disk${i}.qcow2`);
        await createOverlay(files.disk(disk.file), overlay, undefined, "qcow2");
        record.disks.push({ path: overlay, format: "qcow2", readOnly: false, owned: true });
      }
      writeRecord(paths.config, record);
      return await this.boot(record, paths, options.signal, meta);
    } catch (err) {
      // restore created this VM: one that never became ready is of no use to keep.
      releaseResources(paths);
      await this.waitForShimGone(paths);
      const doomed = join(vmsRoot(), `.removing-${id}`);
      renameSync(paths.dir, doomed);
      rmSync(doomed, { recursive: true, force: true });
      throw err;
    } finally {
      release();
    }
  }

  /**
   * Marks a ready pool VM as handed out; false if it is not (any more) a free member of
   * `pool` (taken meanwhile, stopped, removed).
   */
  async claimPoolMember(name: string, pool: string): Promise<boolean> {
    let paths: InstancePaths;
    try {
      paths = this.load(name).paths;
    } catch {
      return false;
    }
    const release = tryLock(paths.lock);
    if (release === undefined) return false;
    try {
      const record = reconcile(readRecord(paths.config, name), paths);
      if (record.state !== "ready" || record.pool?.name !== pool || record.pool.taken) return false;
      writeRecord(paths.config, { ...record, pool: { name: pool, taken: true } });
      return true;
    } finally {
      release();
    }
  }

  listSnapshots(): SnapshotMeta[] {
    return listSnapshots();
  }

  /** Refused while VMs (or other snapshots) still back onto its disks. */
  async removeSnapshot(name: string): Promise<void> {
    const users = [
      ...(await this.list()).filter((vm) => vm.restoredFrom === name).map((vm) => `VM ${vm.name}`),
      ...listSnapshots()
        .filter((s) => s.record.restoredFrom === name)
        .map((s) => `snapshot ${s.name}`),
    ];
    if (users.length > 0) {
      throw new CorralError("SNAPSHOT", `snapshot "${name}" is in use by ${users.join(", ")}`, {
        hint: "their disks are overlays on this snapshot's; remove them first",
      });
    }
    removeSnapshot(name);
  }

  /** Checks every file of a snapshot against its recorded size and SHA-256. */
  async verifySnapshot(name: string): Promise<SnapshotMeta> {
    const meta = readSnapshotMeta(name);
    await verifySnapshotFiles(meta, { full: true });
    return meta;
  }

  /** Memory balloon: the guest gives memory back to the host down to `bytes`. */
  async setMemoryTarget(
    name: string,
    bytes: number,
  ): Promise<{ targetBytes: number; actualBytes: number }> {
    const driver = this.driver;
    if (driver.setMemoryTarget === undefined || driver.memoryTarget === undefined) {
      throw unsupported(driver.capabilities.backend, "a memory balloon");
    }
    const { record, paths } = this.readyVm(name);
    const max = record.spec.memory * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes < 64 * 1024 * 1024 || bytes > max) {
      throw new CorralError(
        "INVALID_ARGUMENT",
        `--memory-target: must be between 64M and the VM's ${record.spec.memory}M`,
        { hint: `e.g. --memory-target ${Math.max(64, Math.floor(record.spec.memory / 2))}M` },
      );
    }
    const vm = this.context(record, paths);
    await driver.setMemoryTarget(vm, bytes);
    return { targetBytes: bytes, actualBytes: await driver.memoryTarget(vm) };
  }

  private async waitForShim(paths: InstancePaths, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + SHIM_REPORT_TIMEOUT_MS;
    for (;;) {
      signal?.throwIfAborted();
      if (readShimState(paths) !== undefined) return;
      const exit = readVmmExit(paths);
      if (exit !== undefined) throw new CorralError("VM_FAILED", exit.reason);
      if (Date.now() > deadline) {
        throw new CorralError("VM_FAILED", "the VMM shim did not report within 10 s");
      }
      await sleep(3);
    }
  }

  /**
   * Readiness: the agent announces itself with a guest-initiated connection to the ready
   * port (no polling while the guest's vsock driver initialises: CONNECTs that arrive then
   * were seen to wedge vhost-device-vsock), then must answer a ping.
   */
  private async waitForAgent(
    record: VmRecord,
    paths: InstancePaths,
    notice: Promise<string>,
    agent: AgentClient,
    signal?: AbortSignal,
  ) {
    const deadline = Date.now() + readyTimeoutOf(record.spec);
    let announced = false;
    void notice.then(() => {
      announced = true;
    });
    while (!announced) {
      signal?.throwIfAborted();
      const exit = readVmmExit(paths);
      if (exit !== undefined) throw new CorralError("VM_FAILED", exit.reason);
      if (Date.now() > deadline) throw notReady(record, paths);
      await Promise.race([notice, sleep(20)]);
    }
    for (;;) {
      signal?.throwIfAborted();
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

  /** Graceful stop (ACPI power button), then SIGKILL after the timeout. */
  async stop(name: string, options: StopOptions = {}): Promise<VmInfo> {
    const { paths } = this.load(name);
    this.forgetAgent(paths.vsockSocket);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      let record = reconcile(readRecord(paths.config, name), paths);
      if (!ACTIVE_STATES.includes(record.state)) return this.info(record, paths);
      const wasPaused = record.state === "paused";
      record = { ...record, state: "stopping", desired: "stopped", reason: "stopped by user" };
      this.save(record, paths);
      const timeoutMs = options.timeoutMs ?? 10_000;
      if (wasPaused && timeoutMs > 0) {
        // A frozen guest cannot see the power button.
        await this.driver.resume?.(this.context(record, paths)).catch(() => {});
      }
      if (timeoutMs > 0) {
        try {
          await this.driver.requestShutdown(this.context(record, paths));
          await this.waitForExit(paths, timeoutMs);
        } catch {
          // fall through to the kill
        }
      }
      const graceful = readVmmExit(paths)?.vmm?.exitCode === 0;
      record.reason = graceful
        ? "stopped by user (the guest shut down cleanly)"
        : `stopped by user (killed: no clean shutdown within ${timeoutMs / 1000} s)`;
      return this.finishStop(record, paths, !graceful);
    } finally {
      release();
    }
  }

  /** Freezes the VM's vCPUs; `resume` continues it. Memory stays allocated. */
  async pause(name: string): Promise<VmInfo> {
    return this.transition(name, "ready", "paused", async (vm) => {
      const driver = this.driver;
      if (driver.pause === undefined) throw unsupported(driver.capabilities.backend, "pause");
      await driver.pause(vm);
    });
  }

  /** Continues a paused VM and sets the guest's clock, which stood still while paused. */
  async resume(name: string): Promise<VmInfo> {
    const info = await this.transition(name, "paused", "ready", async (vm) => {
      const driver = this.driver;
      if (driver.resume === undefined) throw unsupported(driver.capabilities.backend, "resume");
      await driver.resume(vm);
    });
    // The vCPUs run again whatever happens next; a clock left behind is worth a notice only.
    await agentFor(info.paths)
      .setTime()
      .catch((err: unknown) =>
        this.emit({
          type: "notice",
          message: `VM "${name}" resumed, but its clock could not be set: ${String(err)}`,
        }),
      );
    return info;
  }

  private async transition(
    name: string,
    from: VmState,
    to: VmState,
    act: (vm: VmContext) => Promise<void>,
  ): Promise<VmInfo> {
    const { paths } = this.load(name);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      const record = reconcile(readRecord(paths.config, name), paths);
      if (record.state !== from) {
        throw new CorralError("VM_STATE", `VM "${name}" is ${record.state}, not ${from}`, {
          hint:
            from === "paused"
              ? `only a paused VM can be resumed`
              : `start it with "corral start ${name}"`,
        });
      }
      await act(this.context(record, paths));
      const next: VmRecord = { ...record, state: to, reason: undefined };
      this.save(next, paths);
      return this.info(next, paths);
    } finally {
      release();
    }
  }

  /** Immediate SIGKILL of the VMM. */
  async kill(name: string): Promise<VmInfo> {
    const { paths } = this.load(name);
    this.forgetAgent(paths.vsockSocket);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      let record = reconcile(readRecord(paths.config, name), paths);
      if (!ACTIVE_STATES.includes(record.state)) return this.info(record, paths);
      record = { ...record, state: "stopping", desired: "stopped", reason: "killed by user" };
      this.save(record, paths);
      return this.finishStop(record, paths, true);
    } finally {
      release();
    }
  }

  private async finishStop(record: VmRecord, paths: InstancePaths, kill: boolean) {
    if (kill) {
      const shim = readShimState(paths);
      if (shim !== undefined && isAlive(shim.vmmPid, shim.vmmStartTime)) {
        signalProcess(shim.vmmPid, "SIGKILL");
      }
      await this.waitForExit(paths, 5_000).catch(() => {});
    }
    releaseResources(paths);
    await this.detachServices(record);
    const next: VmRecord = { ...record, state: "stopped", stoppedAt: new Date().toISOString() };
    this.save(next, paths);
    return this.info(next, paths);
  }

  private async waitForExit(paths: InstancePaths, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (readVmmExit(paths) === undefined) {
      const shim = readShimState(paths);
      if (shim !== undefined && !isAlive(shim.shimPid)) return;
      if (Date.now() > deadline) throw new CorralError("TIMEOUT", "the VM did not stop in time");
      await sleep(10);
    }
  }

  /** Removes the VM and everything it owns. Refuses a running VM unless `force`. */
  async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    const probe = instancePaths(name, "000000000000");
    if (
      options.force === true &&
      NAME_PATTERN.test(name) &&
      existsSync(probe.dir) &&
      !existsSync(probe.config)
    ) {
      // A create killed before it wrote vm.json: nothing runs, only the directory is left.
      rmSync(probe.dir, { recursive: true, force: true });
      return;
    }
    const { paths } = this.load(name);
    const release = await acquireLock(paths.lock, `VM "${name}"`);
    try {
      const record = reconcile(readRecord(paths.config, name), paths);
      if (ACTIVE_STATES.includes(record.state) && options.force !== true) {
        throw new CorralError("VM_STATE", `VM "${name}" is ${record.state}`, {
          hint: `stop it first with "corral stop ${name}", or use "corral rm -f ${name}"`,
        });
      }
      this.forgetAgent(paths.vsockSocket);
      releaseResources(paths);
      await this.detachServices(record);
      await this.waitForShimGone(paths);
      // Out of sight while still locked: a command waiting for the lock must find no VM,
      // not a half-deleted one. ("." names are never VM names.)
      const doomed = join(vmsRoot(), `.removing-${record.id}`);
      renameSync(paths.dir, doomed);
      rmSync(doomed, { recursive: true, force: true });
    } finally {
      release();
    }
  }

  private async waitForShimGone(paths: InstancePaths): Promise<void> {
    const shim = readShimState(paths);
    if (shim === undefined) return;
    const deadline = Date.now() + 5_000;
    while (isAlive(shim.shimPid) || isAlive(shim.vmmPid, shim.vmmStartTime)) {
      if (Date.now() > deadline) return;
      await sleep(10);
    }
  }

  /** Host services stop serving the VM (best effort: the daemon notices a gone VM anyway). */
  private async detachServices(record: VmRecord): Promise<void> {
    if (!needsHostServices(record.spec)) return;
    await this.services.detach(record.name).catch(() => {});
  }

  async inspect(name: string): Promise<VmInfo> {
    const { record, paths } = this.load(name);
    return this.info(this.observe(record, paths), paths);
  }

  async list(): Promise<VmInfo[]> {
    let names: string[];
    try {
      names = readdirSync(vmsRoot()).sort();
    } catch {
      return [];
    }
    const infos: VmInfo[] = [];
    for (const name of names) {
      try {
        infos.push(await this.inspect(name));
      } catch (err) {
        if (!isCorralError(err, "VM_NOT_FOUND")) throw err;
      }
    }
    return infos;
  }

  /** Resource use of an active VM (see core/stats.ts for where each number comes from). */
  async stats(name: string): Promise<VmStats> {
    const vm = await this.inspect(name);
    if (!ACTIVE_STATES.includes(vm.state) || vm.pids === undefined) {
      throw new CorralError("VM_STATE", `VM "${name}" is ${vm.state}: it has no resource use`, {
        hint: `start it with "corral start ${name}"`,
      });
    }
    const vmm = processUsage(vm.pids.vmm);
    if (vmm === undefined) throw new CorralError("VM_FAILED", `the VMM of "${name}" is gone`);
    const helpers = [vm.pids.shim, vm.pids.sidecar]
      .flatMap((pid) => (pid === null ? [] : [processUsage(pid)]))
      .filter((u): u is NonNullable<typeof u> => u !== undefined);
    const disks = await this.driver.blockStats?.(this.context(vm, vm.paths)).catch(() => []);
    let guestMemory: VmStats["guestMemory"];
    let network: VmStats["network"] = [];
    if (vm.state === "ready") {
      const agent = agentFor(vm.paths);
      const [meminfo, netdev] = await Promise.all([
        agent.readFile("/proc/meminfo", { maxBytes: 64 * 1024 }).catch(() => undefined),
        agent.readFile("/proc/net/dev", { maxBytes: 64 * 1024 }).catch(() => undefined),
      ]);
      guestMemory = meminfo === undefined ? undefined : parseMeminfo(meminfo.toString("latin1"));
      network = netdev === undefined ? [] : parseNetDev(netdev.toString("latin1"));
    }
    return {
      name,
      state: vm.state,
      vmm: { pid: vm.pids.vmm, ...vmm },
      overhead: {
        rssBytes: helpers.reduce((sum, u) => sum + u.rssBytes, 0),
        cpuMs: helpers.reduce((sum, u) => sum + u.cpuMs, 0),
      },
      ...(guestMemory === undefined ? {} : { guestMemory }),
      disks: diskCounters(disks ?? []),
      network,
      at: new Date().toISOString(),
    };
  }

  /** Manifest digests of the OCI images this machine's VMs boot from (their overlays' bases). */
  async imagesInUse(): Promise<Set<string>> {
    const digests = new Set<string>();
    for (const vm of await this.list()) {
      if (vm.rootDisk !== undefined) digests.add(vm.rootDisk.manifestDigest);
    }
    // A snapshot's frozen root disk backs onto its image's rootfs too.
    for (const snap of listSnapshots()) {
      if (snap.record.rootDisk !== undefined) digests.add(snap.record.rootDisk.manifestDigest);
    }
    return digests;
  }

  /** An agent client for a ready VM. */
  async agent(name: string): Promise<AgentClient> {
    return this.keptAgent(this.readyVm(name));
  }

  private keptAgent({ record, paths }: { record: VmRecord; paths: InstancePaths }): AgentClient {
    const life = record.startedAt ?? "";
    const current = this.keptAgents.get(paths.vsockSocket);
    if (current?.life === life) return current.client;
    current?.client.close();
    const client = agentFor(paths, AGENT_KEEP_ALIVE);
    this.keptAgents.set(paths.vsockSocket, { life, client });
    return client;
  }

  private forgetAgent(vsockSocket: string): void {
    this.keptAgents.get(vsockSocket)?.client.close();
    this.keptAgents.delete(vsockSocket);
  }

  /** The VM's record and paths, or an error saying why it cannot take commands now. */
  private readyVm(name: string): { record: VmRecord; paths: InstancePaths } {
    const { record, paths } = this.load(name);
    const current = this.observe(record, paths);
    if (current.state !== "ready") {
      throw new CorralError("VM_STATE", `VM "${name}" is ${current.state}, not ready`, {
        hint:
          current.state === "failed"
            ? `it failed: ${current.reason ?? "unknown reason"}; see "corral logs ${name}"`
            : current.state === "paused"
              ? `resume it with "corral resume ${name}"`
              : `start it with "corral start ${name}"`,
      });
    }
    return { record: current, paths };
  }

  /**
   * Reconciles for a read-only command. Persists only when the VM's lock is free: a command
   * holding it (a stop in progress) owns the record, and a concurrent write would clobber it.
   */
  private observe(record: VmRecord, paths: InstancePaths): VmRecord {
    if (!ACTIVE_STATES.includes(record.state)) return record;
    const release = tryLock(paths.lock);
    if (release === undefined) return record;
    try {
      return reconcile(readRecord(paths.config, record.name), paths);
    } finally {
      release();
    }
  }

  /** Runs a command in a ready VM, with its image's Env, WorkingDir and User as defaults. */
  async exec(name: string, req: ExecRequest): Promise<ExecProcess> {
    const vm = this.readyVm(name);
    const { record } = vm;
    const env = { ...egressProxyEnv(record.spec), ...record.spec.env };
    return this.keptAgent(vm).exec(applyImageConfig(req, record.imageConfig, env));
  }

  /** The command `run` starts when the user gave `args` (Docker's Entrypoint/Cmd rules). */
  async commandFor(name: string, args: readonly string[]): Promise<string[]> {
    return commandFor(args, this.load(name).record.imageConfig);
  }

  serialLogPath(name: string): string {
    return this.load(name).paths.serialLog;
  }

  /** JSON lines, one per egress decision (and one per finished connection). */
  egressLogPath(name: string): string {
    return this.load(name).paths.egressLog;
  }

  private load(name: string): { record: VmRecord; paths: InstancePaths } {
    if (!NAME_PATTERN.test(name)) {
      throw new CorralError("VM_NOT_FOUND", `no VM named "${name}"`, {
        hint: 'list VMs with "corral ls"',
      });
    }
    const probe = instancePaths(name, "000000000000");
    if (!existsSync(probe.config)) {
      throw new CorralError("VM_NOT_FOUND", `no VM named "${name}"`, {
        hint: 'list VMs with "corral ls"',
      });
    }
    const record = readRecord(probe.config, name);
    return { record, paths: instancePaths(name, record.id) };
  }

  private context(record: VmRecord, paths: InstancePaths): VmContext {
    const guestIp = record.guestIp ?? record.spec.ip;
    return {
      id: record.id,
      spec: record.spec,
      paths,
      image: imageFromRecord(record),
      accel: record.accel?.accel ?? "tcg",
      guestCid: record.guestCid,
      ...rootDiskOf(record),
      ...(record.cloudDisk === undefined ? {} : { seed: paths.seed }),
      ...(record.spec.firmware === "uefi" ? { efiVars: paths.efiVars } : {}),
      ...(guestIp === undefined ? {} : { guestIp }),
      disks: record.disks,
      mac: macOf(record),
    };
  }

  private save(record: VmRecord, paths: InstancePaths): void {
    writeRecord(paths.config, record);
    this.emit({ type: "state", name: record.name, state: record.state, reason: record.reason });
  }

  private info(record: VmRecord, paths: InstancePaths): VmInfo {
    const shim = ACTIVE_STATES.includes(record.state) ? readShimState(paths) : undefined;
    return {
      ...record,
      paths,
      ...(shim === undefined
        ? {}
        : { pids: { shim: shim.shimPid, vmm: shim.vmmPid, sidecar: shim.sidecarPid } }),
    };
  }
}

/** What the VMM said (its stderr, in the shim log) and what the guest printed last. */
function failureHint(paths: InstancePaths): string {
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

/** Creates a new VM's instance directory; the name is taken if the directory exists. */
function claimInstanceDir(name: string, hint: string): { id: string; paths: InstancePaths } {
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

/** The fields a VM made from another one (clone, restore) starts its own life with. */
function newLife(reason: string) {
  return {
    state: "stopped" as const,
    reason,
    desired: "stopped" as const,
    createdAt: new Date().toISOString(),
    startedAt: undefined,
    readyAt: undefined,
    stoppedAt: undefined,
    accel: undefined,
  };
}

/** Copies a disk while the VM is frozen (reflinked where the filesystem can). */
async function frozenCopy(
  from: string,
  to: string,
): Promise<{ file: string; sha256: string; size: number }> {
  await copyFile(from, to, fsConstants.COPYFILE_FICLONE);
  return { file: basename(to), sha256: await sha256File(to), size: statSync(to).size };
}

/** What a snapshot cannot carry (yet), refused with the reason rather than saved broken. */
function checkSnapshottable(record: VmRecord): void {
  const refuse = (what: string, hint: string) => {
    throw new CorralError("UNSUPPORTED", `VM "${record.name}" cannot be snapshotted: ${what}`, {
      hint,
    });
  };
  if (record.spec.machine === "microvm") {
    refuse("microvm has no hotplug for the guest channel", "use the default q35 machine");
  }
  if (record.spec.mounts.length > 0) {
    refuse("QEMU cannot migrate mounted 9p shared folders", "snapshot a VM without -v shares");
  }
  if (record.cloudDisk !== undefined || record.spec.firmware === "uefi" || record.spec.cdrom) {
    refuse(
      "snapshots of cloud-image, UEFI and CD-ROM VMs are not supported yet",
      "snapshot VMs of corral's images or of OCI images",
    );
  }
  if (record.spec.network.startsWith("switch:") || record.spec.network.startsWith("tap:")) {
    refuse(
      "restores would share its MAC and address on the segment",
      "use --network none or nat for VMs you snapshot",
    );
  }
  const shared = record.disks.find((d) => !d.owned && !d.readOnly);
  if (shared !== undefined) {
    refuse(
      `${shared.path} is attached read-write and is not corral's to copy`,
      "attach it read-only (--disk PATH:ro), or use a disk corral created (--disk 10G)",
    );
  }
}

/** Removes the temp directories of snapshots whose process died mid-way. */
function sweepDeadSnapshotTemps(): void {
  let names: string[] = [];
  try {
    names = readdirSync(snapshotsRoot());
  } catch {
    return;
  }
  for (const name of names) {
    const pid = /^\.tmp-.+-(\d+)-[0-9a-f]{8}$/.exec(name)?.[1];
    if (pid !== undefined && !isAlive(Number(pid))) {
      rmSync(join(snapshotsRoot(), name), { recursive: true, force: true });
    }
  }
}

function isNamed(pid: number, comm: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === comm;
  } catch {
    return false;
  }
}

/** The shim replaces the vsock sidecar (SIGUSR1); resolves once the new one listens. */
async function swapSidecar(paths: InstancePaths): Promise<void> {
  const before = readShimState(paths);
  if (before === undefined) throw new CorralError("VM_FAILED", "the VM's shim is gone");
  // SIGUSR1's default action kills: never send it to a reused pid.
  if (!isNamed(before.shimPid, "vmm-shim"))
    throw new CorralError("VM_FAILED", "the VM's shim is gone");
  signalProcess(before.shimPid, "SIGUSR1");
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = readShimState(paths);
    if (
      now !== undefined &&
      now.sidecarPid !== null &&
      now.sidecarPid !== before.sidecarPid &&
      existsSync(paths.vhostUserSocket)
    ) {
      return;
    }
    if (readVmmExit(paths) !== undefined) throw new CorralError("VM_FAILED", "the VMM exited");
    if (Date.now() > deadline) {
      throw new CorralError("VM_FAILED", "the vsock sidecar was not replaced within 10 s");
    }
    await sleep(5);
  }
}

function signalGroup(leader: number): void {
  try {
    process.kill(-leader, "SIGKILL");
  } catch {
    // already gone
  }
}

function openMemoryFile(meta: SnapshotMeta): number {
  try {
    return openSync(snapshotPaths(meta.name).memory, "r");
  } catch (err) {
    throw damaged(meta.name, `memory.bin cannot be opened: ${String(err)}`);
  }
}

function agentFor(paths: InstancePaths, keepAlive?: KeptConnectionsOptions): AgentClient {
  return new AgentClient(
    () => connectVsock(paths.vsockSocket, AGENT_VSOCK_PORT, { timeoutMs: 5_000 }),
    { keepAlive },
  );
}

/** The kernel + initramfs every VM boots (OCI images are mounted as the root disk). */
function resolveBootImage(): ImageInfo {
  const image = findDefaultImage();
  if (image === undefined) {
    throw new CorralError("IMAGE_NOT_FOUND", "the default guest image is not built yet", {
      hint: 'run "corral setup" to build it',
    });
  }
  return image;
}

function resolveOciImage(reference: string): OciImage {
  const image = findOciImage(reference);
  if (image === undefined) {
    throw new CorralError("IMAGE_NOT_FOUND", `image "${reference}" has not been pulled`, {
      hint: `pull it with "corral image pull ${reference}" (corral run pulls it for you)`,
    });
  }
  return image;
}

/** The NIC's MAC: the user's, or a locally administered one stable for this VM's id. */
export function macOf(record: Pick<VmRecord, "id" | "spec">): string {
  if (record.spec.mac !== undefined) return record.spec.mac;
  const bytes = createHash("sha256").update(record.id).digest().subarray(0, 5);
  return ["02", ...[...bytes].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/** Creates the new empty disks in the instance directory and checks the existing ones. */
async function prepareDisks(disks: VmSpec["disks"], dir: string): Promise<VmRecord["disks"]> {
  const prepared: VmRecord["disks"] = [];
  for (const [i, disk] of disks.entries()) {
    if ("sizeMiB" in disk) {
      const path = join(dir, `disk${i}.qcow2`);
      await createEmptyDisk(path, disk.sizeMiB);
      prepared.push({ path, format: "qcow2", readOnly: false, owned: true });
    } else {
      const format = await probeDiskFormat(disk.path, `disks[${i}] (--disk ${disk.path})`);
      prepared.push({ path: disk.path, format, readOnly: disk.readOnly, owned: false });
    }
  }
  return prepared;
}

function rootDiskOf(record: VmRecord): Pick<VmContext, "rootDisk"> {
  if (record.cloudDisk !== undefined) {
    if (!existsSync(record.cloudDisk.base)) {
      throw new CorralError(
        "IMAGE_NOT_FOUND",
        `the cloud image of VM "${record.name}" is gone: ${record.cloudDisk.base}`,
        { hint: "put the file back (its overlay holds only this VM's writes), or recreate the VM" },
      );
    }
    return { rootDisk: { path: record.cloudDisk.overlay, format: "qcow2" } };
  }
  if (record.rootDisk === undefined) return {};
  if (!existsSync(record.rootDisk.base)) {
    throw new CorralError(
      "IMAGE_NOT_FOUND",
      `the image of VM "${record.name}" is gone from the cache`,
      {
        hint: `pull ${record.rootDisk.reference} again (same digest), or recreate the VM`,
      },
    );
  }
  return {
    rootDisk: {
      path: record.rootDisk.overlay,
      format: "qcow2",
      grow: record.spec.diskSizeMiB !== undefined,
    },
  };
}

function imageFromRecord(record: VmRecord): ImageInfo {
  if (!existsSync(record.image.kernel) || !existsSync(record.image.initrd)) {
    throw new CorralError(
      "IMAGE_NOT_FOUND",
      `the image of VM "${record.name}" is gone from the cache`,
      {
        hint: 'rebuild it with "corral setup", or recreate the VM',
      },
    );
  }
  return {
    ...record.image,
    dir: "",
    kernelRelease: "",
    createdAt: "",
    sizeBytes: 0,
    inputs: {},
  };
}

function generateName(): string {
  return `vm-${randomBytes(3).toString("hex")}`;
}
