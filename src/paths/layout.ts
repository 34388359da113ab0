/**
 * The one module that knows where corral keeps things on disk. Everything else asks here.
 *
 *   cache  ($CORRAL_CACHE_DIR | $XDG_CACHE_HOME/corral | ~/.cache/corral)
 *     debs/<sha256>.deb               verified Debian packages
 *     indexes/<suite>/...             Debian Release / Packages indexes
 *     images/<name>/<digest>/         built guest images (kernel, initrd, image.json)
 *     tools/<name>/<version>/         host tools corral fetched (vhost-device-vsock)
 *     build/<kind>-<hash>/            compiled artifacts (guest agent, vmm shim)
 *     blobs/<algorithm>/<hex>         OCI blobs (layers), content-addressed, verified
 *   state  ($CORRAL_STATE_DIR | $XDG_STATE_HOME/corral | ~/.local/state/corral)
 *     vms/<name>/                     one instance directory per VM (see InstancePaths)
 *     daemon.log, daemon.lock         the per-user daemon (see daemonPaths)
 *     snapshots/<name>/               snapshot.json, memory.bin, frozen disk copies
 *     pools/<name>.json               warm pool definitions (the daemon keeps them filled)
 *     switch-<name>.lock              held while a VM's address on that switch is chosen
 *   run    (sockets; short paths because sun_path is limited to 107 bytes)
 *     $XDG_RUNTIME_DIR/corral or /tmp/corral-<uid>, then <state-hash>/<vm-id>/
 *     <state-hash>/daemon.sock, daemon.json    the daemon's API socket and its pid
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import { CorralError } from "../errors.js";

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}

export function cacheRoot(): string {
  return (
    env("CORRAL_CACHE_DIR") ?? join(env("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "corral")
  );
}

export function stateRoot(): string {
  return (
    env("CORRAL_STATE_DIR") ??
    join(env("XDG_STATE_HOME") ?? join(homedir(), ".local", "state"), "corral")
  );
}

function runBase(): string {
  const xdg = env("XDG_RUNTIME_DIR");
  if (xdg !== undefined && xdg.length < 40) return join(xdg, "corral");
  return join("/tmp", `corral-${userInfo().uid}`);
}

/** Sockets of VMs in this state root: distinct state roots (tests) never share sockets. */
export function runRoot(): string {
  const tag = createHash("sha256").update(stateRoot()).digest("hex").slice(0, 8);
  return join(runBase(), tag);
}

export const cachePaths = {
  debs: () => join(cacheRoot(), "debs"),
  deb: (sha256: string) => join(cacheRoot(), "debs", `${sha256}.deb`),
  indexes: () => join(cacheRoot(), "indexes"),
  images: () => join(cacheRoot(), "images"),
  image: (name: string, digest: string) => join(cacheRoot(), "images", name, digest),
  tools: () => join(cacheRoot(), "tools"),
  tool: (name: string, version: string) => join(cacheRoot(), "tools", name, version),
  build: (kind: string, hash: string) => join(cacheRoot(), "build", `${kind}-${hash}`),
  tmp: () => join(cacheRoot(), "tmp"),
  blobs: () => join(cacheRoot(), "blobs"),
  /** `digest` is `<algorithm>:<hex>`; anything else could name a path outside the cache. */
  blob: (digest: string) => {
    const match = /^([a-z0-9]+):([a-f0-9]{32,})$/.exec(digest);
    if (match === null) {
      throw new CorralError("INVALID_ARGUMENT", `not a content digest: ${JSON.stringify(digest)}`, {
        hint: "a digest is <algorithm>:<hex>, e.g. sha256:4a5b...",
      });
    }
    return join(cacheRoot(), "blobs", match[1]!, match[2]!);
  },
};

export function vmsRoot(): string {
  return join(stateRoot(), "vms");
}

export function snapshotsRoot(): string {
  return join(stateRoot(), "snapshots");
}

export function poolsRoot(): string {
  return join(stateRoot(), "pools");
}

/** Held while an address on switch `name` is allocated, so two creates never share one. */
export function switchLockPath(name: string): string {
  return join(stateRoot(), `switch-${name}.lock`);
}

/** One snapshot: everything a restore needs, independent of the VM it was taken from. */
export function snapshotPaths(name: string) {
  const dir = join(snapshotsRoot(), name);
  return {
    dir,
    meta: join(dir, "snapshot.json"),
    /** QEMU's migration stream: device state and guest memory. */
    memory: join(dir, "memory.bin"),
    /** Frozen copies of the VM's own disks (root overlay, owned data disks). */
    disk: (file: string) => join(dir, file),
  };
}

/** The per-user daemon (port forwards, egress proxies, switches, pools) of this state root. */
export function daemonPaths() {
  return {
    /** Its API: HTTP over this unix socket (0600, in the private run directory). */
    socket: join(runRoot(), "daemon.sock"),
    /** pid + start time + version, written once it listens. */
    state: join(runRoot(), "daemon.json"),
    /** Held while a CLI decides to spawn it, so two CLIs never start two daemons. */
    lock: join(stateRoot(), "daemon.lock"),
    log: join(stateRoot(), "daemon.log"),
  };
}

export interface InstancePaths {
  dir: string;
  /** Spec + state, written atomically. */
  config: string;
  lock: string;
  serialLog: string;
  shimLog: string;
  /** Written by the shim once it forked the VMM: pids and the VMM's start time. */
  shimState: string;
  /** Written by the shim when the VMM exits: exit status and reason. */
  exitFile: string;
  /** Touched by the host once the agent answered; the shim's readiness watchdog waits for it. */
  readyFile: string;
  runDir: string;
  qmpSocket: string;
  /** Hybrid-vsock unix socket: the host end of the guest channel (CONNECT <port>). */
  vsockSocket: string;
  /** vhost-user socket between QEMU and the vsock sidecar. */
  vhostUserSocket: string;
  /** QEMU's `-netdev stream` socket for switch networking (the daemon connects to it). */
  netSocket: string;
  /** Snapshots: QEMU writes (save) or reads (restore) its state through this socket. */
  migrationSocket: string;
  /** JSON lines: every egress decision of the VM's proxy. */
  egressLog: string;
  /** cloud-init NoCloud seed of a cloud-image VM, rewritten at every start. */
  seed: string;
  /** UEFI variable store (a copy of OVMF's template, then the VM's own). */
  efiVars: string;
}

export function instancePaths(name: string, id: string): InstancePaths {
  const dir = join(vmsRoot(), name);
  const runDir = join(runRoot(), id);
  return {
    dir,
    config: join(dir, "vm.json"),
    lock: join(dir, "lock"),
    serialLog: join(dir, "serial.log"),
    shimLog: join(dir, "shim.log"),
    shimState: join(dir, "shim.json"),
    exitFile: join(dir, "exit.json"),
    readyFile: join(dir, "ready"),
    runDir,
    qmpSocket: join(runDir, "qmp.sock"),
    vsockSocket: join(runDir, "vsock.sock"),
    vhostUserSocket: join(runDir, "vhost-vsock.sock"),
    netSocket: join(runDir, "net0.sock"),
    migrationSocket: join(runDir, "migrate.sock"),
    egressLog: join(dir, "egress.log"),
    seed: join(dir, "seed.iso"),
    efiVars: join(dir, "efivars.fd"),
  };
}

/** Creates a directory only the current user can enter (sockets live in such directories). */
export function ensurePrivateDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  // /tmp is shared: another user could have created our directory first, or planted a link.
  for (const dir of [runBase(), runRoot()]) {
    if (path.startsWith(dir)) assertPrivate(dir);
  }
  return path;
}

function assertPrivate(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new CorralError("SETUP", `${dir} is not a private directory of the current user`, {
      hint: `remove it (or fix it: owner you, mode 0700) and retry; set XDG_RUNTIME_DIR to use another place`,
    });
  }
}
