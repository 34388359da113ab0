/**
 * The one module that knows where corral keeps things on disk. Everything else asks here.
 * The three roots come from an SDK instance while it runs an operation, else from the
 * environment at each call (paths/roots.ts says why).
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
 *   run    (sockets; short paths because sun_path holds 104 bytes on macOS, 108 on Linux)
 *     $CORRAL_RUNTIME_DIR | $XDG_RUNTIME_DIR/corral | /tmp/corral-<uid>, then <state-hash>/<vm-id>/
 *     <state-hash>/daemon.sock, daemon.json    the daemon's API socket and its pid
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { CorralError } from "../errors.js";
import { activeRoots, defaultCacheDir, defaultRuntimeBase, defaultStateDir } from "./roots.js";

/** The SDK instance's roots inside its operations (paths/roots.ts), else the environment's. */
export function cacheRoot(): string {
  return activeRoots()?.cacheDir ?? defaultCacheDir(process.env);
}

export function stateRoot(): string {
  return activeRoots()?.stateDir ?? defaultStateDir(process.env);
}

/**
 * The longest path a unix socket may have: sun_path holds 104 bytes on macOS (108 on Linux),
 * the terminating NUL included. Every host keeps to the smaller, so one layout serves both.
 */
export const SOCKET_PATH_MAX = 103;

/**
 * The longest socket name in a VM's run directory: a hybrid vsock listener for a
 * guest-initiated connection, `<vsock.sock>_<port>`, with the largest (32-bit) port. The
 * others: qmp.sock, vsock.sock, vhost-vsock.sock, net0.sock, migrate.sock, and virtiofsd's
 * vfs0.sock .. vfs15.sock (drivers/qemu/args.ts).
 */
export const LONGEST_SOCKET_NAME = `vsock.sock_${2 ** 32 - 1}`;

/**
 * The directory under which sockets live (paths/roots.ts defaultRuntimeBase): 40 bytes +
 * "/corral" + "/<tag>/<id>/" (23) + the longest name (21) stays within SOCKET_PATH_MAX (the
 * bound predates macOS; kept so running VMs' sockets never move).
 */
export function runBase(): string {
  return activeRoots()?.runtimeBase ?? defaultRuntimeBase(process.env);
}

/** Refuses a socket path the kernel would cut short or reject (bind: ENAMETOOLONG/EINVAL). */
export function checkSocketPath(path: string): string {
  const bytes = Buffer.byteLength(path);
  if (bytes > SOCKET_PATH_MAX) {
    throw new CorralError(
      "SETUP",
      `socket path ${path} is ${bytes} bytes long; unix sockets allow ${SOCKET_PATH_MAX}`,
      {
        hint: "set XDG_RUNTIME_DIR to a shorter directory (corral keeps its sockets under it)",
        details: { path, bytes, max: SOCKET_PATH_MAX },
      },
    );
  }
  return path;
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
    /** A file of the snapshot: the backend's state files, frozen copies of the VM's disks. */
    file: (file: string) => join(dir, file),
  };
}

/** The per-user daemon (port forwards, egress proxies, switches, pools) of this state root. */
export function daemonPaths() {
  return {
    /** Its API: HTTP over this unix socket (0600, in the private run directory). */
    socket: checkSocketPath(join(runRoot(), "daemon.sock")),
    /** pid + start time + version, written once it listens. */
    state: join(runRoot(), "daemon.json"),
    /** Held while a CLI decides to spawn it, so two CLIs never start two daemons. */
    lock: join(stateRoot(), "daemon.lock"),
    log: join(stateRoot(), "daemon.log"),
  };
}

/** The files of a VM that do not depend on its id (its name is its directory). */
export interface InstanceFiles {
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
  /** JSON lines: every egress decision of the VM's proxy. */
  egressLog: string;
  /** cloud-init NoCloud seed of a cloud-image VM, rewritten at every start. */
  seed: string;
  /** UEFI variable store (a copy of the firmware's template, then the VM's own). */
  efiVars: string;
}

export interface InstancePaths extends InstanceFiles {
  /**
   * Private and short (sun_path), removed when the VM stops. The backend's own sockets live
   * here too, named by its driver (drivers/<backend>/files.ts).
   */
  runDir: string;
  /** The host end of the guest channel (hybrid vsock: CONNECT <port>; <path>_<port> listeners). */
  vsockSocket: string;
  /** The switch port's stream socket (the VMM serves it; the daemon's switch dials it). */
  netSocket: string;
}

export function instanceFiles(name: string): InstanceFiles {
  const dir = join(vmsRoot(), name);
  return {
    dir,
    config: join(dir, "vm.json"),
    lock: join(dir, "lock"),
    serialLog: join(dir, "serial.log"),
    shimLog: join(dir, "shim.log"),
    shimState: join(dir, "shim.json"),
    exitFile: join(dir, "exit.json"),
    readyFile: join(dir, "ready"),
    egressLog: join(dir, "egress.log"),
    seed: join(dir, "seed.iso"),
    efiVars: join(dir, "efivars.fd"),
  };
}

export function instancePaths(name: string, id: string): InstancePaths {
  const runDir = join(runRoot(), id);
  // Checked once for all of this VM's sockets, here where the run directory is built.
  checkSocketPath(join(runDir, LONGEST_SOCKET_NAME));
  return {
    ...instanceFiles(name),
    runDir,
    vsockSocket: join(runDir, "vsock.sock"),
    netSocket: join(runDir, "net0.sock"),
  };
}

/** A removed VM's directory while it is deleted ("." names are never VM names). */
export function doomedInstanceDir(id: string): string {
  return join(vmsRoot(), `.removing-${id}`);
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
