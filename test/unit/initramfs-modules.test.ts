import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import {
  type KernelModules,
  type ModuleInfo,
  modulesDep,
  parseModinfo,
  planModuleLoad,
} from "../../src/images/initramfs/modules.js";

/** An ELF64 relocatable with a .modinfo section, as modpost writes it. */
function ko(modinfo: string[]): Buffer {
  const info = Buffer.from(`${modinfo.join("\0")}\0`);
  const shstr = Buffer.from("\0.modinfo\0.shstrtab\0");
  const head = Buffer.alloc(64);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2;
  head[5] = 1;
  const infoAt = 64;
  const strAt = infoAt + info.length;
  const shoff = strAt + shstr.length;
  head.writeBigUInt64LE(BigInt(shoff), 0x28);
  head.writeUInt16LE(64, 0x3a);
  head.writeUInt16LE(3, 0x3c);
  head.writeUInt16LE(2, 0x3e);
  const sh = Buffer.alloc(64 * 3);
  const section = (i: number, name: number, offset: number, size: number) => {
    sh.writeUInt32LE(name, i * 64);
    sh.writeBigUInt64LE(BigInt(offset), i * 64 + 0x18);
    sh.writeBigUInt64LE(BigInt(size), i * 64 + 0x20);
  };
  section(1, 1, infoAt, info.length);
  section(2, 10, strAt, shstr.length);
  return Buffer.concat([head, info, shstr, sh]);
}

function mod(name: string, depends: string[] = [], extra: Partial<ModuleInfo> = {}): ModuleInfo {
  return { name, path: `kernel/${name}.ko`, depends, softdepPre: [], aliases: [], ...extra };
}

const KM: KernelModules = {
  release: "6.1.0-test-amd64",
  modules: new Map(
    [
      mod("virtio_ring"),
      mod("virtio"),
      mod("virtio_pci_modern_dev"),
      mod("virtio_pci", ["virtio_pci_modern_dev", "virtio", "virtio_ring"]),
      mod("virtio_blk", ["virtio", "virtio_ring"]),
      mod("jbd2"),
      mod("ext4", ["jbd2"], { softdepPre: ["crc32c"] }),
      mod("crc32c_intel", [], { aliases: ["crc32c", "crypto-crc32c"] }),
      mod("crc32c_generic", [], { aliases: ["crc32c", "crypto-crc32c"] }),
    ].map((m) => [m.name, m]),
  ),
  builtin: new Set(["unix", "overlay"]),
  kept: new Map(),
};

describe("kernel modules", () => {
  it("reads depends, softdep and aliases from .modinfo", () => {
    const pairs = parseModinfo(
      ko([
        "license=GPL",
        "softdep=pre: crc32c",
        "alias=fs-ext4",
        "depends=jbd2,mbcache",
        "name=ext4",
        "vermagic=6.1.0",
      ]),
    );
    assert.deepEqual(
      pairs.find(([k]) => k === "depends"),
      ["depends", "jbd2,mbcache"],
    );
    assert.deepEqual(
      pairs.find(([k]) => k === "softdep"),
      ["softdep", "pre: crc32c"],
    );
    assert.equal(pairs.length, 6);
  });

  it("orders dependencies first, each once, following soft dependencies", () => {
    const plan = planModuleLoad(KM, ["virtio-pci", "virtio_blk", "ext4", "overlay"]);
    assert.deepEqual(
      plan.order.map((m) => m.name),
      [
        "virtio_pci_modern_dev",
        "virtio",
        "virtio_ring",
        "virtio_pci",
        "virtio_blk",
        "jbd2",
        "crc32c_generic",
        "ext4",
      ],
    );
    assert.deepEqual(plan.builtin, ["overlay"]);
  });

  it("writes a depmod-style modules.dep for the subset", () => {
    const dep = modulesDep(planModuleLoad(KM, ["virtio_blk"]));
    assert.equal(
      dep,
      "kernel/virtio.ko:\nkernel/virtio_ring.ko:\nkernel/virtio_blk.ko: kernel/virtio_ring.ko kernel/virtio.ko\n",
    );
  });

  it("names a missing module and who needed it", () => {
    const km: KernelModules = { ...KM, modules: new Map([["a", mod("a", ["ghost"])]]) };
    assert.throws(
      () => planModuleLoad(km, ["a"]),
      (e) =>
        isCorralError(e, "IMAGE_BUILD") && /ghost/.test(e.message) && /needed by a/.test(e.message),
    );
  });

  it("detects dependency cycles", () => {
    const km: KernelModules = {
      ...KM,
      modules: new Map([
        ["a", mod("a", ["b"])],
        ["b", mod("b", ["a"])],
      ]),
    };
    assert.throws(
      () => planModuleLoad(km, ["a"]),
      (e) => isCorralError(e, "IMAGE_BUILD") && /cycle/.test(e.message),
    );
  });
});
