/**
 * Builds QEMU's argv for one VM. Pure: same context, same argv (unit-tested).
 *
 * q35 + PVH vmlinux is the default: microvm boots 0.1-0.2 s faster under TCG but hangs in
 * ~4-5% of boots on our machines (docs/benchmarks.md); q35 had none in 270 boots.
 * Guest memory is a shared memfd because vhost-user-vsock's sidecar maps it.
 */
import { CorralError } from "../../errors.js";
import { parseNetworkMode } from "../../spec/network.js";
import type { VmContext } from "../driver.js";
import { qemuFiles, virtiofsSocket } from "./files.js";

/** The guest's vsock CID: each VM has its own sidecar, so CIDs need not differ across VMs. */
export const GUEST_CID = 3;

/** A value inside a QEMU option list: a comma would start the next option unless doubled. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}

/** What this start adds to the VM: resolved host files, the accelerator, a restore. */
export interface StartOptions {
  accel: "kvm" | "hvf" | "tcg";
  /** OVMF's code image, for `firmware: "uefi"`. */
  ovmfCode?: string;
  /** Restoring: QEMU reads its saved state from this inherited descriptor. */
  incomingFd?: number;
}

export function qemuArgs(qemuPath: string, vm: VmContext, host: StartOptions): string[] {
  const { spec } = vm;
  const files = qemuFiles(vm.runDir);
  const mem = `${spec.memory}M`;
  const microvm = spec.machine === "microvm";
  const accelOpts = host.accel === "tcg" ? "tcg,thread=multi" : host.accel;
  const machine = microvm
    ? `microvm,memory-backend=mem0,pit=off,pic=off,isa-serial=on,rtc=on`
    : `q35,memory-backend=mem0`;
  return [
    qemuPath,
    "-name",
    `corral-${spec.name},debug-threads=on`,
    "-machine",
    machine,
    "-accel",
    accelOpts,
    "-cpu",
    host.accel === "tcg" ? "max" : "host",
    "-smp",
    String(spec.cpus),
    "-m",
    mem,
    "-object",
    `memory-backend-memfd,id=mem0,size=${mem},share=on`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    ...bootArgs(vm, microvm, host),
    "-chardev",
    `file,id=serial0,path=${opt(vm.serialLog)}`,
    "-serial",
    "chardev:serial0",
    ...vsockArgs(vm, microvm, host.incomingFd !== undefined),
    // A new guid on every start: a guest restored from a snapshot sees it change and reseeds
    // its RNG (Linux's vmgenid driver), so clones of one snapshot never share random state.
    ...(microvm ? [] : ["-device", "vmgenid,id=vmgenid0,guid=auto"]),
    "-device",
    `${microvm ? "virtio-balloon-device" : "virtio-balloon-pci"},id=balloon0,deflate-on-oom=on`,
    ...diskArgs(vm, microvm),
    ...networkArgs(vm, microvm),
    ...mountArgs(vm, microvm),
    "-qmp",
    `unix:${opt(files.qmpSocket)},server=on,wait=off`,
    // -S: the loaded state stays paused until corral checked the stream and plugs the channel.
    // QEMU reads the memory file itself, at its own pace, while corral hashes it in parallel.
    ...(host.incomingFd === undefined ? [] : ["-S", "-incoming", `fd:${host.incomingFd}`]),
  ];
}

/**
 * The guest channel. On q35 the device sits behind a hotplug-capable root port: a snapshot
 * unplugs it (vhost-user-vsock cannot migrate) and plugs a fresh one in afterwards. A VM
 * restored from a snapshot starts without it; the plug happens once the state is loaded.
 */
export const VSOCK_DEVICE_ID = "vsock";
export const VSOCK_CHARDEV_ID = "vsock0";
export const VSOCK_ROOT_PORT = "rp1";

function vsockArgs(vm: VmContext, microvm: boolean, restoring: boolean): string[] {
  const port = microvm ? [] : ["-device", `pcie-root-port,id=${VSOCK_ROOT_PORT},slot=1,chassis=1`];
  if (restoring) return port;
  return [
    ...port,
    "-chardev",
    `socket,id=${VSOCK_CHARDEV_ID},path=${opt(qemuFiles(vm.runDir).vhostUserSocket)}`,
    "-device",
    // The guest CID is the sidecar's to set (--guest-cid): vhost-user devices take none.
    microvm
      ? `vhost-user-vsock-device,chardev=${VSOCK_CHARDEV_ID},id=${VSOCK_DEVICE_ID}`
      : `vhost-user-vsock-pci,chardev=${VSOCK_CHARDEV_ID},id=${VSOCK_DEVICE_ID},bus=${VSOCK_ROOT_PORT}`,
    ...(microvm ? ["-global", "virtio-mmio.force-legacy=false"] : []),
  ];
}

/**
 * Direct kernel boot (corral's kernel + initramfs, or a cloud image's own kernel), or UEFI:
 * OVMF's code read-only and the VM's own variable store, which keeps boot entries across
 * restarts; the firmware then boots the disks, then the CD-ROM.
 */
function bootArgs(vm: VmContext, microvm: boolean, host: StartOptions): string[] {
  const { spec } = vm;
  if (spec.firmware === "uefi") {
    if (host.ovmfCode === undefined || vm.efiVars === undefined) {
      throw new CorralError(
        "INTERNAL",
        "UEFI boot needs the OVMF code image and the VM's variable store",
      );
    }
    return [
      "-drive",
      `if=pflash,format=raw,unit=0,file=${opt(host.ovmfCode)},readonly=on`,
      "-drive",
      `if=pflash,format=raw,unit=1,file=${opt(vm.efiVars)}`,
    ];
  }
  if (spec.kernel !== undefined && spec.initrd !== undefined) {
    // A cloud image's own kernel: its root is the first disk, unless the user said otherwise.
    const root = spec.cmdline.some((arg) => arg.startsWith("root=")) ? [] : ["root=/dev/vda", "rw"];
    return [
      "-kernel",
      spec.kernel,
      "-initrd",
      spec.initrd,
      "-append",
      ["console=ttyS0", ...root, ...spec.cmdline].join(" "),
    ];
  }
  const cmdline = [
    vm.image.cmdline,
    `corral.hostname=${spec.name}`,
    ...moduleArgs(vm, microvm),
    ...guestNetArgs(vm),
    ...(vm.rootDisk === undefined ? [] : ["corral.root=/dev/vda"]),
    ...(vm.rootDisk?.grow === true ? ["corral.growroot=1"] : []),
    ...spec.mounts.map(
      (m, i) => `corral.mount=corral${i}:${m.type}:${m.readOnly ? "ro" : "rw"}:${m.target}`,
    ),
    ...spec.cmdline,
  ].join(" ");
  return ["-kernel", vm.image.kernel, "-initrd", vm.image.initrd, "-append", cmdline];
}

/** The image loads only virtio-pci and vsock at boot; everything else is asked for here. */
function moduleArgs(vm: VmContext, microvm: boolean): string[] {
  const rootDisk = vm.rootDisk !== undefined;
  const modules = [
    ...(microvm ? ["virtio_mmio"] : []),
    ...(vm.spec.network !== "none" ? ["virtio_net"] : []),
    ...(vm.disks.length > 0 && !rootDisk ? ["virtio_blk"] : []),
    // ext4 needs crc32c, a soft dependency that modprobe with modules.dep does not follow.
    ...(rootDisk ? ["virtio_blk", "crc32c_generic", "ext4"] : []),
    ...(vm.spec.mounts.some((m) => m.type === "9p") ? ["9pnet_virtio", "9p"] : []),
    ...(vm.spec.mounts.some((m) => m.type === "virtiofs") ? ["virtiofs"] : []),
  ];
  return modules.length === 0 ? [] : [`corral.modules=${modules.join(",")}`];
}

/** How the guest's init configures eth0: DHCP, a static address, or just the link. */
function guestNetArgs(vm: VmContext): string[] {
  if (vm.spec.network === "none") return [];
  const ip = vm.guestIp ?? (vm.spec.network === "nat" ? "dhcp" : undefined);
  if (ip === undefined) return ["corral.net=link"];
  if (ip === "dhcp") return ["corral.net=dhcp"];
  return [`corral.net=static:${ip}${vm.spec.gateway === undefined ? "" : `:${vm.spec.gateway}`}`];
}

/** "none" adds no NIC at all: the guest has only loopback, not a NIC with no route. */
function networkArgs(vm: VmContext, microvm: boolean): string[] {
  const mode = parseNetworkMode(vm.spec.network);
  if (mode.kind === "none") return [];
  const nic = `${microvm ? "virtio-net-device" : "virtio-net-pci"},netdev=net0,mac=${vm.mac}`;
  switch (mode.kind) {
    case "nat":
      return ["-netdev", "user,id=net0", "-device", nic];
    case "tap":
      return [
        "-netdev",
        `tap,id=net0,ifname=${mode.iface},script=no,downscript=no`,
        "-device",
        nic,
      ];
    case "switch":
      // QEMU listens; corral's daemon connects as the switch port (and reconnects after a
      // daemon restart, which a listening switch could not ask of QEMU 7.2).
      return [
        "-netdev",
        `stream,id=net0,server=on,addr.type=unix,addr.path=${opt(vm.switchSocket)}`,
        "-device",
        nic,
      ];
  }
}

/**
 * Shared folders over virtio-9p. security_model=none: files keep the host's ownership and the
 * guest's chmod reaches the host; readonly=on makes QEMU itself refuse writes, so a guest
 * that remounts read-write still cannot change the host directory.
 */
function mountArgs(vm: VmContext, microvm: boolean): string[] {
  return vm.spec.mounts.flatMap((m, i) =>
    m.type === "virtiofs"
      ? [
          "-chardev",
          `socket,id=vfs${i},path=${opt(virtiofsSocket(vm.runDir, i))}`,
          "-device",
          `${microvm ? "vhost-user-fs-device" : "vhost-user-fs-pci"},chardev=vfs${i},tag=corral${i}`,
        ]
      : [
          "-fsdev",
          `local,id=fs${i},path=${opt(m.source)},security_model=none${m.readOnly ? ",readonly=on" : ""}`,
          "-device",
          `${microvm ? "virtio-9p-device" : "virtio-9p-pci"},fsdev=fs${i},mount_tag=corral${i}`,
        ],
  );
}

/**
 * virtio-blk disks: the root disk first (the guest always finds it at /dev/vda), then the
 * cloud-init seed (vdb), then data disks. Under UEFI the boot order is the disks in that
 * order, then the CD-ROM: an installer ISO boots once, the installed disk afterwards.
 */
function diskArgs(vm: VmContext, microvm: boolean): string[] {
  const device = microvm ? "virtio-blk-device" : "virtio-blk-pci";
  const uefi = vm.spec.firmware === "uefi";
  const args: string[] = [];
  let bootIndex = 0;
  const attach = (id: string, path: string, format: string, readOnly: boolean, boot: boolean) =>
    args.push(
      "-drive",
      `file=${opt(path)},if=none,id=${id},format=${format},cache=writeback,discard=unmap${readOnly ? ",read-only=on" : ""}`,
      "-device",
      `${device},drive=${id}${uefi && boot ? `,bootindex=${bootIndex++}` : ""}`,
    );
  if (vm.rootDisk !== undefined) {
    attach("root", vm.rootDisk.path, vm.rootDisk.format, false, true);
  }
  if (vm.seed !== undefined) attach("seed", vm.seed, "raw", true, false);
  for (const [i, disk] of vm.disks.entries()) {
    attach(`disk${i}`, disk.path, disk.format, disk.readOnly, true);
  }
  if (vm.spec.cdrom !== undefined) {
    // q35's built-in AHCI controller: firmware reads CDs from it without guest drivers.
    args.push(
      "-drive",
      `file=${opt(vm.spec.cdrom)},if=none,id=cd0,media=cdrom,format=raw,readonly=on`,
      "-device",
      `ide-cd,drive=cd0,bus=ide.0${uefi ? `,bootindex=${bootIndex++}` : ""}`,
    );
  }
  return args;
}

export function vhostVsockArgs(sidecarPath: string, vm: VmContext): string[] {
  return [
    sidecarPath,
    "--guest-cid",
    String(GUEST_CID),
    "--socket",
    qemuFiles(vm.runDir).vhostUserSocket,
    "--uds-path",
    vm.channelSocket,
  ];
}
