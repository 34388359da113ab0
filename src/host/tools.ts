/**
 * The host tools corral needs, where they come from, and how to find them. `setup` installs
 * the missing ones; `doctor` reports them; drivers ask `requireTool` and get an error that
 * names the package to install.
 */
import { existsSync } from "node:fs";
import { CorralError } from "../errors.js";
import { which } from "./which.js";

export interface HostTool {
  /** Executable name looked up on PATH, or an absolute path that must exist (firmware, data). */
  command: string;
  /** Debian package that provides it. */
  aptPackage: string;
  purpose: string;
  /** Alternatives that satisfy the same need (first found wins). */
  alternatives?: readonly string[];
  /** Needed only by corral's own test suite and benchmarks (`corral setup --dev`). */
  dev?: boolean;
}

export const HOST_TOOLS: readonly HostTool[] = [
  { command: "qemu-system-x86_64", aptPackage: "qemu-system-x86", purpose: "runs the VMs" },
  { command: "qemu-img", aptPackage: "qemu-utils", purpose: "creates and converts disks" },
  { command: "mke2fs", aptPackage: "e2fsprogs", purpose: "builds ext4 filesystems" },
  { command: "xz", aptPackage: "xz-utils", purpose: "unpacks Debian packages and the kernel" },
  { command: "musl-gcc", aptPackage: "musl-tools", purpose: "builds the static guest agent" },
  { command: "gcc", aptPackage: "gcc", purpose: "builds the VMM shim", alternatives: ["cc"] },
  { command: "zstd", aptPackage: "zstd", purpose: "unpacks zstd-compressed image layers" },
  { command: "debugfs", aptPackage: "e2fsprogs", purpose: "fixes ownership in ext4 images" },
  {
    command: "/usr/lib/qemu/virtiofsd",
    aptPackage: "qemu-system-common",
    purpose: "virtiofs shared folders (-v HOST:GUEST:virtiofs)",
  },
  {
    command: "/usr/share/OVMF/OVMF_CODE_4M.fd",
    aptPackage: "ovmf",
    purpose: "UEFI firmware (--firmware uefi)",
  },
  {
    command: "docker-registry",
    aptPackage: "docker-registry",
    purpose: "a real OCI registry for the tests",
    dev: true,
  },
  {
    command: "openssl",
    aptPackage: "openssl",
    purpose: "test certificates for registry auth",
    dev: true,
  },
  { command: "skopeo", aptPackage: "skopeo", purpose: "peer in the image benchmark", dev: true },
  { command: "umoci", aptPackage: "umoci", purpose: "peer in the image benchmark", dev: true },
  {
    command: "isoinfo",
    aptPackage: "genisoimage",
    purpose: "checks corral's ISO images",
    dev: true,
  },
  { command: "xorriso", aptPackage: "xorriso", purpose: "builds test boot ISOs", dev: true },
  {
    command: "grub-mkrescue",
    aptPackage: "grub-common",
    purpose: "builds test boot ISOs",
    dev: true,
  },
  {
    command: "/usr/lib/grub/i386-pc/moddep.lst",
    aptPackage: "grub-pc-bin",
    purpose: "BIOS boot of test ISOs",
    dev: true,
  },
  {
    command: "/usr/lib/grub/x86_64-efi/moddep.lst",
    aptPackage: "grub-efi-amd64-bin",
    purpose: "UEFI boot of test ISOs",
    dev: true,
  },
  { command: "mformat", aptPackage: "mtools", purpose: "EFI partitions of test ISOs", dev: true },
  {
    command: "debootstrap",
    aptPackage: "debootstrap",
    purpose: "builds the cloud-init test guest",
    dev: true,
  },
  {
    command: "cloud-init",
    aptPackage: "cloud-init",
    purpose: "validates generated user-data against cloud-init's schema",
    dev: true,
  },
  { command: "cpio", aptPackage: "cpio", purpose: "checks the initramfs writer", dev: true },
  { command: "ip", aptPackage: "iproute2", purpose: "TAP devices (--network tap:, as root)" },
  {
    command: "/usr/sbin/qemu-ga",
    aptPackage: "qemu-guest-agent",
    purpose: "peer in the exec benchmark",
    dev: true,
  },
];

export function findTool(tool: HostTool): string | undefined {
  if (tool.command.startsWith("/")) return existsSync(tool.command) ? tool.command : undefined;
  for (const command of [tool.command, ...(tool.alternatives ?? [])]) {
    const path = which(command);
    if (path !== undefined) return path;
  }
  return undefined;
}

export function requireTool(command: string): string {
  const tool = HOST_TOOLS.find((t) => t.command === command);
  const path = tool === undefined ? which(command) : findTool(tool);
  if (path !== undefined) return path;
  const pkg = tool?.aptPackage ?? command;
  throw new CorralError("TOOL_MISSING", `${command} is not installed`, {
    hint: `run "corral setup" as root, or "apt-get install ${pkg}"`,
    details: { command, aptPackage: pkg },
  });
}

export function missingTools(options: { dev?: boolean } = {}): HostTool[] {
  return HOST_TOOLS.filter(
    (tool) => (options.dev === true || tool.dev !== true) && findTool(tool) === undefined,
  );
}
