/**
 * corral's default guest image: Debian 12's generic kernel as a PVH vmlinux, plus a small
 * initramfs (static busybox, the needed modules, the guest agent, busybox init). Built from
 * verified Debian packages into a content-addressed cache directory.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { commitTemp, writeFileAtomicSync } from "../base/atomic.js";
import { noProgress, type ProgressListener } from "../base/progress.js";
import { CorralError } from "../errors.js";
import { cachePaths } from "../paths/layout.js";
import { buildAgent } from "./agent-binary.js";
import { extractDeb } from "./debian/extract.js";
import { type FetchedDeb, fetchDeb } from "./debian/fetch-deb.js";
import { upstreamVersion } from "./debian/version.js";
import type { ImageInfo } from "./image-info.js";
import { writeGzipCpio } from "./initramfs/cpio.js";
import { modulesDep, planModuleLoad, readKernelModules } from "./initramfs/modules.js";
import { rootfsEntries } from "./initramfs/rootfs.js";
import { extractPvhKernel } from "./kernel.js";
import { IMAGE_JSON, readImageInfo } from "./store.js";

const run = promisify(execFile);

export const DEFAULT_IMAGE_NAME = "corral-default";
export const DEFAULT_IMAGE_SUITE = "bookworm";

/**
 * quiet: the serial console is slow under TCG. panic=-1 + reboot=t: a panic or reboot ends
 * the VM at once (QEMU runs with -no-reboot). tsc=reliable + no_timer_check: skip the clock
 * source watchdog and timer checks that TCG's jittery timing makes slow or flaky.
 * mitigations=off: measured 0.5 s faster to init under TCG; the sandbox boundary is the
 * hypervisor, which guest-kernel Spectre mitigations don't guard.
 * cryptomgr.notests: the crypto self-tests were the slowest initcall (0.49 s under TCG).
 */
export const DEFAULT_CMDLINE =
  "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable no_timer_check mitigations=off cryptomgr.notests";

/** Modules the guest needs; their dependencies are added from the modules' own metadata. */
export const GUEST_MODULES = [
  "virtio_pci",
  "virtio_mmio",
  "vmw_vsock_virtio_transport",
  "virtio_blk",
  "virtio_net",
  "virtio_console",
  "virtio_rng",
  "virtio_balloon",
  "9p",
  "9pnet_virtio",
  "virtiofs",
  "button",
  "evdev",
  "ext4",
  "overlay",
  "isofs",
] as const;

/**
 * Loaded by init at every boot: the guest channel (virtio-pci + vsock) and the ACPI power
 * button. Each insmod costs ~25 ms under TCG, so everything else in GUEST_MODULES loads only
 * when a VM needs it (`corral.modules=a,b` on the kernel command line -> modprobe).
 */
export const BOOT_MODULES = [
  "virtio_pci",
  "vmw_vsock_virtio_transport",
  "button",
  "evdev",
] as const;

/** Bump when the image layout changes in a way the hashed inputs don't capture. */
const BUILDER_VERSION = 2;

const INIT_FILES = ["inittab", "rc", "agent", "udhcpc", "passwd", "group", "hosts", "power-button"];

export function initFilesDir(): string {
  return fileURLToPath(new URL("../../agent/init/", import.meta.url));
}

export interface BuildDefaultImageOptions {
  onProgress?: ProgressListener;
  /** Re-fetch the package indexes, so a newer kernel or busybox is picked up. */
  refresh?: boolean;
  /** A prebuilt static guest agent; by default the agent is built from agent/ source. */
  agent?: string;
}

function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Hash of everything local that shapes the image besides the agent binary and the debs. */
function localInputsSha256(): string {
  const dir = initFilesDir();
  const h = createHash("sha256");
  h.update(JSON.stringify({ BUILDER_VERSION, DEFAULT_CMDLINE, GUEST_MODULES, BOOT_MODULES }));
  for (const name of INIT_FILES) {
    let data: Buffer;
    try {
      data = readFileSync(join(dir, name));
    } catch (err) {
      throw new CorralError("IMAGE_BUILD", `guest init file missing: ${join(dir, name)}`, {
        cause: err,
        hint: "reinstall corral: its agent/init directory is incomplete",
      });
    }
    h.update(`${name}\0${data.length}\0`);
    h.update(data);
  }
  return h.digest("hex");
}

function currentPointer(): string {
  return join(cachePaths.images(), DEFAULT_IMAGE_NAME, "current");
}

/** The default image last built on this machine, without any network access. */
export function findDefaultImage(): ImageInfo | undefined {
  let digest: string;
  try {
    digest = readFileSync(currentPointer(), "utf8").trim();
  } catch {
    return undefined;
  }
  if (!/^[0-9a-f]{64}$/.test(digest)) return undefined;
  return readImageInfo(cachePaths.image(DEFAULT_IMAGE_NAME, digest));
}

async function resolveAgent(opts: BuildDefaultImageOptions): Promise<string> {
  if (opts.agent !== undefined) return opts.agent;
  return buildAgent(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress });
}

function debInput(d: FetchedDeb) {
  return { name: d.name, version: d.version, sha256: d.sha256, filename: d.filename };
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function busyboxApplets(busybox: string): Promise<string[]> {
  try {
    const { stdout } = await run(busybox, ["--list-full"], { maxBuffer: 1 << 20 });
    return stdout.split("\n").filter((l) => l.trim() !== "");
  } catch (err) {
    throw new CorralError("IMAGE_BUILD", `cannot list busybox applets with ${busybox}`, {
      cause: err,
    });
  }
}

/**
 * Builds the default image, or returns the existing one when nothing changed. With an image
 * already built and the same local inputs (agent binary, init files), this touches no network;
 * `refresh` re-resolves the packages so a newer kernel gets picked up.
 */
export async function buildDefaultImage(opts: BuildDefaultImageOptions = {}): Promise<ImageInfo> {
  const onProgress = opts.onProgress ?? noProgress;
  onProgress({ phase: "agent", label: "corral-agent" });
  const agentPath = await resolveAgent(opts);
  const agentSha256 = sha256(await readFile(agentPath));
  onProgress({ phase: "agent", label: "corral-agent", done: true });
  const localSha256 = localInputsSha256();

  const existing = findDefaultImage();
  if (
    opts.refresh !== true &&
    existing !== undefined &&
    existing.inputs.agentSha256 === agentSha256 &&
    existing.inputs.localSha256 === localSha256
  ) {
    return existing;
  }

  const fetchOpts = {
    suite: DEFAULT_IMAGE_SUITE,
    onProgress,
    ...(opts.refresh === undefined ? {} : { refresh: opts.refresh }),
  };
  const kernelDeb = await fetchDeb({
    ...fetchOpts,
    name: "linux-image-amd64",
    followDepends: /^linux-image-\d/,
  });
  const busyboxDeb = await fetchDeb({ ...fetchOpts, name: "busybox-static", refresh: false });
  const inputs = {
    builder: BUILDER_VERSION,
    kernel: debInput(kernelDeb),
    busybox: debInput(busyboxDeb),
    agentSha256,
    localSha256,
  };
  const digest = sha256(JSON.stringify(inputs));
  const finalDir = cachePaths.image(DEFAULT_IMAGE_NAME, digest);

  let info = readImageInfo(finalDir);
  if (info === undefined) {
    info = await buildInto(finalDir, {
      digest,
      inputs,
      kernelDeb,
      busyboxDeb,
      agentPath,
      signatureVerified: kernelDeb.signatureVerified && busyboxDeb.signatureVerified,
      onProgress,
    });
  }
  await mkdir(join(cachePaths.images(), DEFAULT_IMAGE_NAME), { recursive: true });
  writeFileAtomicSync(currentPointer(), `${digest}\n`);
  onProgress({ phase: "image", label: info.version, done: true });
  return info;
}

interface BuildPlan {
  digest: string;
  inputs: Record<string, unknown>;
  kernelDeb: FetchedDeb;
  busyboxDeb: FetchedDeb;
  agentPath: string;
  signatureVerified: boolean;
  onProgress: ProgressListener;
}

async function buildInto(finalDir: string, p: BuildPlan): Promise<ImageInfo> {
  const parent = join(finalDir, "..");
  await mkdir(parent, { recursive: true });
  await cleanStaleBuilds();
  // Dot-prefixed: listImages() and a concurrent build never mistake it for an image.
  const tmp = join(parent, `.build-${randomBytes(6).toString("hex")}`);
  const work = join(tmp, ".work");
  await mkdir(work, { recursive: true });
  try {
    const step = (phase: string, label: string, done = false) =>
      p.onProgress({ phase, label, ...(done ? { done } : {}) });

    step("modules", p.kernelDeb.name);
    const km = await readKernelModules(p.kernelDeb.path, (path) =>
      /^boot\/vmlinuz-[^/]+$/.test(path),
    );
    const plan = planModuleLoad(km, GUEST_MODULES);
    const bootPlan = planModuleLoad(km, BOOT_MODULES);
    const wanted = new Set(plan.order.map((m) => `lib/modules/${km.release}/${m.path}`));
    const modulesRoot = join(work, "modules");
    await extractDeb(p.kernelDeb.path, modulesRoot, (path) => wanted.has(path));
    step("modules", `${plan.order.length} modules`, true);

    step("kernel", km.release);
    const vmlinuz = km.kept.get(`boot/vmlinuz-${km.release}`);
    if (vmlinuz === undefined) {
      throw new CorralError("IMAGE_BUILD", `${p.kernelDeb.name} has no boot/vmlinuz-${km.release}`);
    }
    const kernel = await extractPvhKernel(vmlinuz, join(tmp, "vmlinux"));
    step("kernel", km.release, true);

    step("busybox", p.busyboxDeb.version);
    const busyboxRoot = join(work, "busybox");
    await extractDeb(p.busyboxDeb.path, busyboxRoot, (path) => path === "bin/busybox");
    const busybox = join(busyboxRoot, "bin/busybox");
    const applets = await busyboxApplets(busybox);
    step("busybox", p.busyboxDeb.version, true);

    step("initramfs", "initrd.img");
    const entries = await rootfsEntries({
      busybox,
      applets,
      agent: p.agentPath,
      initDir: initFilesDir(),
      kernelRelease: km.release,
      modules: plan,
      bootModules: bootPlan,
      modulesRoot,
      modulesDep: modulesDep(plan),
    });
    const initrdPath = join(tmp, "initrd.img");
    const initrd = await writeGzipCpio(entries, initrdPath);
    p.onProgress({ phase: "initramfs", label: "initrd.img", current: initrd.size, done: true });

    await rm(work, { recursive: true, force: true });
    const agentSha = String(p.inputs.agentSha256).slice(0, 8);
    const info: ImageInfo = {
      name: DEFAULT_IMAGE_NAME,
      version: `${km.release}+bb${upstreamVersion(p.busyboxDeb.version)}+agent${agentSha}`,
      digest: p.digest,
      dir: finalDir,
      kernel: join(finalDir, "vmlinux"),
      initrd: join(finalDir, "initrd.img"),
      cmdline: DEFAULT_CMDLINE,
      kernelRelease: km.release,
      createdAt: new Date().toISOString(),
      sizeBytes: kernel.size + initrd.size,
      inputs: {
        ...p.inputs,
        modules: plan.order.map((m) => m.name),
        bootModules: bootPlan.order.map((m) => m.name),
        initrdUncompressedBytes: initrd.uncompressedSize,
        signatureVerified: p.signatureVerified,
      },
    };
    await writeFile(join(tmp, IMAGE_JSON), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o644 });
    for (const name of ["vmlinux", "initrd.img", IMAGE_JSON]) await fsyncFile(join(tmp, name));
    try {
      await commitTemp(tmp, finalDir);
    } catch (err) {
      // Another build of the same inputs finished first: its result is identical.
      const raced = readImageInfo(finalDir);
      if (raced !== undefined) return raced;
      throw new CorralError("IMAGE_BUILD", `cannot move the built image into ${finalDir}`, {
        cause: err,
      });
    }
    return info;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Removes leftovers of interrupted builds (dot-prefixed temp dirs older than an hour). */
export async function cleanStaleBuilds(maxAgeMs = 60 * 60 * 1000): Promise<void> {
  const parent = join(cachePaths.images(), DEFAULT_IMAGE_NAME);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(".build-")) continue;
    const s = await stat(join(parent, name)).catch(() => undefined);
    if (s !== undefined && Date.now() - s.mtimeMs > maxAgeMs) {
      await rm(join(parent, name), { recursive: true, force: true });
    }
  }
}
