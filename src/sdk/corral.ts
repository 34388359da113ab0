/**
 * The SDK's entry: `new Corral({ stateDir, cacheDir })`. It reads its configuration once, in
 * the constructor (the options, else the environment then), and runs every operation with it
 * (paths/roots.ts), so instances with different directories coexist in one process. One
 * lifecycle Manager serves all of its parts: `vms`, `images`, `snapshots`, `pools`.
 */
import type { ProgressListener } from "../base/progress.js";
import { daemonServices } from "../daemon/services-client.js";
import type { Driver } from "../drivers/driver.js";
import type { DriverRegistry } from "../drivers/registry.js";
import { throwIfCancelled } from "../errors.js";
import { type Environment, rootsFromEnv } from "../paths/roots.js";
import { type DoctorReport, doctor } from "../setup/doctor.js";
import { setup } from "../setup/setup.js";
import type { VmEvent } from "../vm/events.js";
import { Manager } from "../vm/manager.js";
import type { HostServices } from "../vm/services.js";
import { type EventsOptions, eventIterator } from "./events.js";
import { Images } from "./images.js";
import { Pools } from "./pools.js";
import { Scope } from "./scope.js";
import { Snapshots } from "./snapshots.js";
import { backendView, builtinImageView } from "./to-view.js";
import type { BackendView, SetupView } from "./views.js";
import { Vms } from "./vms.js";

export interface CorralOptions {
  /** VMs, snapshots, pools (default: $CORRAL_STATE_DIR, else $XDG_STATE_HOME/corral or ~/.local/state/corral). */
  stateDir?: string;
  /** Downloads, images, built helpers (default: $CORRAL_CACHE_DIR, else $XDG_CACHE_HOME/corral or ~/.cache/corral). */
  cacheDir?: string;
  /**
   * Where sockets go; must be a short path (default: $XDG_RUNTIME_DIR/corral when short,
   * else /tmp/corral-<uid>).
   */
  runtimeDir?: string;
  /**
   * The environment to read defaults and settings from (PATH, CORRAL_DEBIAN_MIRROR,
   * DOCKER_CONFIG...), read once here (default: process.env as it is now).
   */
  env?: Environment;
  /** The backends VMs may name (default: the ones this build ships). */
  drivers?: DriverRegistry;
  /** One more backend (an embedder's, or the test backend `FakeDriver`). */
  driver?: Driver;
  /** Who serves port forwards, egress and switch ports (default: the per-user daemon). */
  services?: HostServices;
  /** Called with every lifecycle event, as `events()` yields them. */
  onEvent?: (event: VmEvent) => void;
}

export interface CorralSetupOptions {
  onProgress?: ProgressListener;
  /** Re-resolve packages from the archive even when cached artifacts exist. */
  refresh?: boolean;
  /** Also install what corral's own tests need. */
  dev?: boolean;
  /** Checked between the steps (apt, backends, the shim, the image). */
  signal?: AbortSignal;
}

/**
 * corral's SDK: one instance per state directory, its configuration read once here.
 *
 * ```ts
 * const corral = new Corral({ stateDir, cacheDir });
 * const vm = await corral.vms.create({ name: "box" });
 * await vm.start({ signal });
 * const { exitCode, stdout } = await vm.run(["uname", "-a"]);
 * ```
 */
export class Corral {
  /** VMs: create, get (a `Vm` handle), list, clone, run. */
  readonly vms: Vms;
  /** The built-in image and pulled OCI images: pull, list, inspect, remove, prune. */
  readonly images: Images;
  /** Saved running VMs: list, get, verify, remove, restore (as a new VM). */
  readonly snapshots: Snapshots;
  /** Warm pools of ready VMs, kept by the per-user daemon: create, list, remove, take. */
  readonly pools: Pools;
  /** The state directory this instance uses. */
  readonly stateDir: string;
  /** The cache directory this instance uses. */
  readonly cacheDir: string;
  private readonly manager: Manager;
  private readonly scope: Scope;

  constructor(options: CorralOptions = {}) {
    const fromEnv = rootsFromEnv(options.env ?? process.env);
    this.scope = new Scope({
      stateDir: options.stateDir ?? fromEnv.stateDir,
      cacheDir: options.cacheDir ?? fromEnv.cacheDir,
      runtimeBase: options.runtimeDir ?? fromEnv.runtimeBase,
      env: fromEnv.env,
    });
    this.stateDir = this.scope.roots.stateDir;
    this.cacheDir = this.scope.roots.cacheDir;
    this.manager = new Manager({
      services: options.services ?? daemonServices,
      ...(options.drivers === undefined ? {} : { drivers: options.drivers }),
      ...(options.driver === undefined ? {} : { driver: options.driver }),
      ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
    });
    this.images = new Images(this.manager, this.scope);
    this.vms = new Vms(this.manager, this.scope, this.images);
    this.snapshots = new Snapshots(this.manager, this.scope, this.vms);
    this.pools = new Pools(this.manager, this.scope, this.vms);
  }

  /**
   * Lifecycle events (state changes, notices) of this instance's operations, from now until
   * `signal` aborts or the loop breaks: `for await (const e of corral.events({ vm, signal }))`.
   * Changes made by other processes (the CLI, the daemon) are not seen.
   */
  events(options: EventsOptions = {}): AsyncIterable<VmEvent> {
    return this.scope.iterate(() => eventIterator(this.manager.events, options));
  }

  /** The backends this instance can run, with their feature records. */
  backends(): BackendView[] {
    return this.scope.run(() => this.manager.drivers.all().map(backendView));
  }

  /** What this host has and lacks for corral (tools, accelerator, backends, image). */
  doctor(): Promise<DoctorReport> {
    return this.scope.run(async () => doctor());
  }

  /** Installs missing host packages (as root), builds the shim, the agent and the default image. */
  setup(options: CorralSetupOptions = {}): Promise<SetupView> {
    const { signal, ...rest } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const done = await setup({ ...rest, ...(signal === undefined ? {} : { signal }) });
      return {
        installedPackages: done.installedPackages,
        components: done.components.map((c) => ({ name: c.name, version: c.version })),
        image: builtinImageView(done.image),
      };
    });
  }
}
