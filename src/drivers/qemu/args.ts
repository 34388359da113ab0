/**
 * Builds QEMU's argv for one VM. Pure: same context, same argv (unit-tested).
 *
 * q35 + PVH vmlinux is the default: microvm boots 0.1-0.2 s faster under TCG but hangs in
 * ~4-5% of boots on our machines (docs/benchmarks.md); q35 had none in 270 boots.
 * Guest memory is a shared memfd because vhost-user-vsock's sidecar maps it.
 */
import type { VmContext } from "../driver.js";

/** A value inside a QEMU option list: a comma would start the next option unless doubled. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}

export function qemuArgs(qemuPath: string, vm: VmContext): string[] {
  const { spec, paths, image } = vm;
  const mem = `${spec.memory}M`;
  const microvm = spec.machine === "microvm";
  const accelOpts = vm.accel === "tcg" ? "tcg,thread=multi" : vm.accel;
  const machine = microvm
    ? `microvm,memory-backend=mem0,pit=off,pic=off,isa-serial=on,rtc=on`
    : `q35,memory-backend=mem0`;
  const cmdline = [
    image.cmdline,
    `corral.hostname=${spec.name}`,
    ...moduleArgs(microvm, vm.rootDisk !== undefined, vm.disks.length > 0, spec.network !== "none"),
    ...(spec.network === "nat" ? ["corral.net=dhcp"] : []),
    ...(vm.rootDisk === undefined ? [] : ["corral.root=/dev/vda"]),
    ...spec.cmdline,
  ].join(" ");
  return [
    qemuPath,
    "-name",
    `corral-${spec.name},debug-threads=on`,
    "-machine",
    machine,
    "-accel",
    accelOpts,
    "-cpu",
    vm.accel === "tcg" ? "max" : "host",
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
    "-kernel",
    image.kernel,
    "-initrd",
    image.initrd,
    "-append",
    cmdline,
    "-chardev",
    `file,id=serial0,path=${opt(paths.serialLog)}`,
    "-serial",
    "chardev:serial0",
    "-chardev",
    `socket,id=vsock0,path=${opt(paths.vhostUserSocket)}`,
    "-device",
    // The guest CID is the sidecar's to set (--guest-cid): vhost-user devices take none.
    `${microvm ? "vhost-user-vsock-device" : "vhost-user-vsock-pci"},chardev=vsock0`,
    ...(microvm ? ["-global", "virtio-mmio.force-legacy=false"] : []),
    ...diskArgs(vm, microvm),
    ...networkArgs(vm, microvm),
    "-qmp",
    `unix:${opt(paths.qmpSocket)},server=on,wait=off`,
  ];
}

/** The image loads only virtio-pci and vsock at boot; everything else is asked for here. */
function moduleArgs(
  microvm: boolean,
  rootDisk: boolean,
  dataDisks: boolean,
  nic: boolean,
): string[] {
  const modules = [
    ...(microvm ? ["virtio_mmio"] : []),
    ...(nic ? ["virtio_net"] : []),
    ...(dataDisks && !rootDisk ? ["virtio_blk"] : []),
    // ext4 needs crc32c, a soft dependency that modprobe with modules.dep does not follow.
    ...(rootDisk ? ["virtio_blk", "crc32c_generic", "ext4"] : []),
  ];
  return modules.length === 0 ? [] : [`corral.modules=${modules.join(",")}`];
}

/** "none" adds no NIC at all: the guest has only loopback, not a NIC with no route. */
function networkArgs(vm: VmContext, microvm: boolean): string[] {
  if (vm.spec.network === "none") return [];
  return [
    "-netdev",
    "user,id=net0",
    "-device",
    `${microvm ? "virtio-net-device" : "virtio-net-pci"},netdev=net0,mac=${vm.mac}`,
  ];
}

function diskArgs(vm: VmContext, microvm: boolean): string[] {
  const device = microvm ? "virtio-blk-device" : "virtio-blk-pci";
  const args: string[] = [];
  const attach = (id: string, path: string, format: string, readOnly: boolean) =>
    args.push(
      "-drive",
      `file=${opt(path)},if=none,id=${id},format=${format},cache=writeback,discard=unmap${readOnly ? ",read-only=on" : ""}`,
      "-device",
      `${device},drive=${id}`,
    );
  // The root disk first, so the guest always finds it at /dev/vda.
  if (vm.rootDisk !== undefined) attach("root", vm.rootDisk.path, vm.rootDisk.format, false);
  for (const [i, disk] of vm.disks.entries()) {
    attach(`disk${i}`, disk.path, disk.format, disk.readOnly);
  }
  return args;
}

export function vhostVsockArgs(sidecarPath: string, vm: VmContext): string[] {
  return [
    sidecarPath,
    "--guest-cid",
    String(vm.guestCid),
    "--socket",
    vm.paths.vhostUserSocket,
    "--uds-path",
    vm.paths.vsockSocket,
  ];
}
