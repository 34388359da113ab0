/**
 * `corral setup`: installs missing host packages (as root, via apt), fetches what each backend
 * needs (QEMU: its vsock sidecar), compiles the shim and agent, and builds the default image. Every step
 * is a no-op when already done, so running it twice is cheap.
 */
import type { ProgressListener } from "../base/progress.js";
import { noProgress } from "../base/progress.js";
import { builtinDrivers } from "../drivers/builtin.js";
import type { HostComponent } from "../drivers/driver.js";
import { CorralError, throwIfCancelled } from "../errors.js";
import { aptInstall, aptInstallCommand, canUseApt } from "../host/apt.js";
import { missingTools } from "../host/tools.js";
import { buildVmmShim } from "../host/vmm-shim-binary.js";
import { buildDefaultImage } from "../images/default-image.js";
import type { ImageInfo } from "../images/image-info.js";

export interface SetupOptions {
  onProgress?: ProgressListener;
  /** Re-resolve packages from the archive even when cached artifacts exist. */
  refresh?: boolean;
  /** Also install what corral's own tests and benchmarks need. */
  dev?: boolean;
  /** Checked between the steps: apt, each backend's host parts, the shim, the image. */
  signal?: AbortSignal;
}

export interface SetupResult {
  installedPackages: string[];
  /** What the backends fetched (QEMU: vhost-device-vsock). */
  components: HostComponent[];
  image: ImageInfo;
}

export async function setup(options: SetupOptions = {}): Promise<SetupResult> {
  const onProgress = options.onProgress ?? noProgress;
  const { signal } = options;
  throwIfCancelled(signal);
  const missing = missingTools({ dev: options.dev });
  const packages = [...new Set(missing.map((tool) => tool.aptPackage))];
  if (packages.length > 0) {
    if (!canUseApt()) {
      throw new CorralError(
        "TOOL_MISSING",
        `missing host tools: ${missing.map((t) => t.command).join(", ")}`,
        {
          hint: `install them with:\n  ${aptInstallCommand(packages)}\nthen run "corral setup" again`,
          details: { packages },
        },
      );
    }
    onProgress({ phase: "apt", label: `installing ${packages.join(" ")}` });
    await aptInstall(packages, (line) => onProgress({ phase: "apt", label: line }));
    const still = missingTools({ dev: options.dev });
    if (still.length > 0) {
      throw new CorralError(
        "SETUP",
        `still missing after apt-get: ${still.map((t) => t.command).join(", ")}`,
      );
    }
    onProgress({ phase: "apt", label: "host packages installed", done: true });
  }
  const components: HostComponent[] = [];
  for (const driver of builtinDrivers().all()) {
    if (!driver.features.hosts.includes(process.platform)) continue;
    throwIfCancelled(signal);
    components.push(
      ...((await driver.prepareHost?.({ onProgress, refresh: options.refresh })) ?? []),
    );
  }
  throwIfCancelled(signal);
  onProgress({ phase: "build", label: "vmm-shim" });
  await buildVmmShim();
  onProgress({ phase: "build", label: "vmm-shim", done: true });
  throwIfCancelled(signal);
  const image = await buildDefaultImage({ onProgress, refresh: options.refresh });
  return { installedPackages: packages, components, image };
}
