import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmContext } from "../../src/drivers/driver.js";
import {
  qemuArgs as buildArgs,
  type StartOptions,
  vhostVsockArgs,
} from "../../src/drivers/qemu/args.js";
import { qemuFiles } from "../../src/drivers/qemu/files.js";
import { instancePaths } from "../../src/paths/layout.js";
import { parseSpec } from "../../src/spec/schema.js";

const paths = instancePaths("box", "0123456789ab");

/** The argv of a TCG start unless `host` says otherwise. */
function qemuArgs(qemu: string, vm: VmContext, host: Partial<StartOptions> = {}): string[] {
  return buildArgs(qemu, vm, { accel: "tcg", ...host });
}

function context(overrides: Record<string, unknown> = {}): VmContext {
  return {
    id: "0123456789ab",
    spec: parseSpec({ name: "box", cpus: 2, memory: "512M", ...overrides }),
    instanceDir: paths.dir,
    runDir: paths.runDir,
    serialLog: paths.serialLog,
    channelSocket: paths.vsockSocket,
    switchSocket: paths.netSocket,
    image: {
      name: "corral-default",
      version: "1",
      digest: "sha256:x",
      kernel: "/img/vmlinux",
      initrd: "/img/initrd.img",
      cmdline: "console=ttyS0",
    },
    disks: [],
    mac: "02:11:22:33:44:55",
  };
}

function valueAfter(argv: string[], flag: string): string[] {
  return argv.flatMap((arg, i) => (arg === flag ? [argv[i + 1] ?? ""] : []));
}

describe("qemuArgs", () => {
  it("builds a q35 TCG machine with shared memfd memory and vhost-user vsock", () => {
    const argv = qemuArgs("/usr/bin/qemu-system-x86_64", context());
    assert.equal(argv[0], "/usr/bin/qemu-system-x86_64");
    assert.deepEqual(valueAfter(argv, "-machine"), ["q35,memory-backend=mem0"]);
    assert.deepEqual(valueAfter(argv, "-object"), [
      "memory-backend-memfd,id=mem0,size=512M,share=on",
    ]);
    assert.deepEqual(valueAfter(argv, "-smp"), ["2"]);
    assert.deepEqual(valueAfter(argv, "-cpu"), ["max"]);
    const devices = valueAfter(argv, "-device");
    // Behind a hotplug root port, so a snapshot can unplug it (vhost-user-vsock cannot migrate).
    assert.ok(devices.includes("pcie-root-port,id=rp1,slot=1,chassis=1"));
    assert.ok(devices.includes("vhost-user-vsock-pci,chardev=vsock0,id=vsock,bus=rp1"));
    assert.ok(devices.includes("vmgenid,id=vmgenid0,guid=auto"));
    assert.ok(devices.includes("virtio-balloon-pci,id=balloon0,deflate-on-oom=on"));
    assert.match(valueAfter(argv, "-append")[0] ?? "", /^console=ttyS0 corral.hostname=box$/);
    assert.deepEqual(valueAfter(argv, "-incoming"), []);
  });
  it("restores without the vsock device, reading the state from an inherited descriptor", () => {
    const argv = qemuArgs("qemu", context(), { incomingFd: 3 });
    assert.deepEqual(valueAfter(argv, "-incoming"), ["fd:3"]);
    assert.ok(argv.includes("-S"));
    const devices = valueAfter(argv, "-device");
    assert.ok(devices.includes("pcie-root-port,id=rp1,slot=1,chassis=1"));
    assert.ok(!devices.some((d) => d.startsWith("vhost-user-vsock")));
    assert.deepEqual(
      valueAfter(argv, "-chardev").filter((c) => c.includes("vsock")),
      [],
    );
    assert.ok(argv.includes("-no-reboot"));
  });
  it("passes extra kernel parameters as separate words, never through a shell", () => {
    const argv = qemuArgs("qemu", context({ cmdline: ["loglevel=7", "foo=$(reboot)"] }));
    assert.equal(
      valueAfter(argv, "-append")[0],
      "console=ttyS0 corral.hostname=box loglevel=7 foo=$(reboot)",
    );
  });
  it("asks the guest for the modules and root disk the VM needs", () => {
    const vm = {
      ...context(),
      rootDisk: { path: "/vms/box/root,1.qcow2", format: "qcow2" as const },
    };
    const argv = qemuArgs("qemu", vm);
    assert.match(
      valueAfter(argv, "-append")[0] ?? "",
      / corral.modules=virtio_blk,crc32c_generic,ext4 corral.root=\/dev\/vda$/,
    );
    assert.ok(
      valueAfter(argv, "-drive")[0]?.startsWith(
        "file=/vms/box/root,,1.qcow2,if=none,id=root,format=qcow2",
      ),
      "commas in paths are escaped for QEMU's option parser",
    );
    assert.ok(valueAfter(argv, "-device").includes("virtio-blk-pci,drive=root"));
    assert.doesNotMatch(
      valueAfter(qemuArgs("qemu", context()), "-append")[0] ?? "",
      /corral\.(modules|root)/,
    );
  });
  it("adds no NIC by default and a user-mode NIC with DHCP for nat", () => {
    const none = qemuArgs("qemu", context());
    assert.ok(!none.includes("-netdev"));
    const nat = qemuArgs("qemu", context({ network: "nat" }));
    assert.deepEqual(valueAfter(nat, "-netdev"), ["user,id=net0"]);
    assert.ok(
      valueAfter(nat, "-device").includes("virtio-net-pci,netdev=net0,mac=02:11:22:33:44:55"),
    );
    assert.match(valueAfter(nat, "-append")[0] ?? "", /corral.modules=virtio_net corral.net=dhcp/);
  });
  it("uses the mmio vsock device on microvm", () => {
    const argv = qemuArgs("qemu", context({ machine: "microvm" }));
    assert.match(valueAfter(argv, "-append")[0] ?? "", /corral.modules=virtio_mmio/);
    assert.ok(valueAfter(argv, "-device").some((d) => d.startsWith("vhost-user-vsock-device,")));
  });
  it("points the sidecar at the same sockets", () => {
    const vm = context();
    const argv = vhostVsockArgs("/bin/vhost-device-vsock", vm);
    assert.deepEqual(argv.slice(1), [
      "--guest-cid",
      "3",
      "--socket",
      qemuFiles(vm.runDir).vhostUserSocket,
      "--uds-path",
      vm.channelSocket,
    ]);
  });
});
