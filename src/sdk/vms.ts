/** `corral.vms`: creating, finding and listing VMs; `run` is create + start + exec + stop. */
import { cancelled, throwIfCancelled } from "../errors.js";
import { DEFAULT_IMAGE_NAME } from "../images/default-image.js";
import { findOciImage } from "../images/oci-store.js";
import type { VmSpecInput } from "../spec/schema.js";
import type { Manager } from "../vm/manager.js";
import type { ImagePullOptions, Images } from "./images.js";
import { type RunOptions, type RunResult, runInVm } from "./run.js";
import type { Scope } from "./scope.js";
import { vmView } from "./to-view.js";
import type { VmView } from "./views.js";
import { type SignalOptions, Vm } from "./vm.js";

export interface VmCreateOptions extends SignalOptions {
  /**
   * How to pull `spec.image` when it is an OCI image not pulled yet (default: pull it, with
   * the same signal). `false`: refuse an image that is not there.
   */
  pull?: false | Omit<ImagePullOptions, "signal">;
}

/** `vms.run`: RunOptions, with `onReady` given the VM's view. */
export interface VmsRunOptions extends Omit<RunOptions, "onReady"> {
  /** Called once the VM is ready. */
  onReady?: (vm: VmView) => void;
}

/** `corral.vms`: creating, finding, listing and running VMs. */
export class Vms {
  /** @internal */
  constructor(
    private readonly manager: Manager,
    private readonly scope: Scope,
    private readonly images: Images,
  ) {}

  /** A handle on an existing VM; throws VM_NOT_FOUND (kind not-found) when there is none. */
  get(name: string): Promise<Vm> {
    return this.scope.run(async () => {
      await this.manager.inspect(name);
      return this.handle(name);
    });
  }

  /** Every VM of this state directory, reconciled with the host's processes. */
  list(): Promise<VmView[]> {
    return this.scope.run(async () => (await this.manager.list()).map(vmView));
  }

  /**
   * Validates `spec` and records a stopped VM (`vm.start()` boots it). Nothing is left
   * behind when it fails or `signal` aborts.
   */
  create(spec: Partial<VmSpecInput>, options: VmCreateOptions = {}): Promise<Vm> {
    const { signal } = options;
    return this.scope.run(async () => {
      throwIfCancelled(signal);
      const image = spec.image;
      if (
        options.pull !== false &&
        image !== undefined &&
        image !== DEFAULT_IMAGE_NAME &&
        findOciImage(image) === undefined
      ) {
        await this.images.pull(image, { ...(options.pull ?? {}), signal });
      }
      const vm = await this.manager.create(spec, signal === undefined ? {} : { signal });
      if (signal?.aborted === true) {
        await this.manager.remove(vm.name, { force: true }).catch(() => {});
        throw cancelled(signal);
      }
      return this.handle(vm.name);
    });
  }

  /** Copies a stopped VM's spec and disks under a new name. */
  clone(source: string, target: string): Promise<Vm> {
    return this.scope.run(async () => this.handle((await this.manager.clone(source, target)).name));
  }

  /**
   * Runs one command in a new VM (or one restored from a snapshot, or taken from a pool) and
   * stops it (removes it with `rm`); the command's output goes to the streams given. Aborting
   * kills the command and the VM.
   */
  run(options: VmsRunOptions): Promise<RunResult> {
    const { onReady, ...rest } = options;
    return this.scope.run(() =>
      runInVm(this.manager, {
        ...rest,
        ...(onReady === undefined ? {} : { onReady: (vm) => onReady(vmView(vm)) }),
      }),
    );
  }

  /** @internal */
  handle(name: string): Vm {
    return new Vm(name, this.manager, this.scope);
  }
}
