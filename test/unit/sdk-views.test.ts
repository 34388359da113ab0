/**
 * The SDK's views are deliberate shapes: no path of corral's (instance, run, cache or
 * snapshot directories) and none of the records' internal fields reach them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { OciImage } from "../../src/images/oci-store.js";
import { instancePaths } from "../../src/paths/layout.js";
import { withRoots } from "../../src/paths/roots.js";
import { ociImageView, poolView, snapshotView, vmView } from "../../src/sdk/to-view.js";
import { parseSpec } from "../../src/spec/schema.js";
import type { VmInfo } from "../../src/vm/manager.js";
import type { VmRecord } from "../../src/vm/record.js";
import type { SnapshotMeta } from "../../src/vm/snapshot-store.js";

const roots = { stateDir: "/state-root", cacheDir: "/cache-root", runtimeBase: "/run-root" };
const INTERNAL = [
  "paths",
  "desired",
  "version",
  "spec",
  "rootDisk",
  "cloudDisk",
  "imageConfig",
  "guestCid",
  "accel",
];

function record(): VmRecord {
  return {
    version: 1,
    id: "0123456789ab",
    name: "web",
    spec: parseSpec({
      name: "web",
      image: "alpine:3",
      ports: [{ hostPort: 8080, guestPort: 80 }],
      mounts: [{ source: "/srv/data", target: "/data", readOnly: true }],
      disks: [{ sizeMiB: 100 }, { path: "/srv/disk.img", readOnly: true }],
    }),
    state: "ready",
    image: {
      name: "corral-default",
      version: "1",
      digest: "d".repeat(64),
      kernel: "/cache-root/images/corral-default/d/vmlinux",
      initrd: "/cache-root/images/corral-default/d/initrd.img",
      cmdline: "console=ttyS0",
    },
    accel: { accel: "kvm", reason: "the host has /dev/kvm" },
    rootDisk: {
      reference: "docker.io/library/alpine:3",
      manifestDigest: `sha256:${"a".repeat(64)}`,
      base: "/cache-root/images/oci/aaaa/rootfs.ext4",
      overlay: "/state-root/vms/web/root.qcow2",
    },
    disks: [
      { path: "/state-root/vms/web/disk0.qcow2", format: "qcow2", readOnly: false, owned: true },
      { path: "/srv/disk.img", format: "raw", readOnly: true, owned: false },
    ],
    guestCid: 3,
    desired: "running",
    createdAt: "2026-01-01T00:00:00.000Z",
    startedAt: "2026-01-01T00:00:01.000Z",
    readyAt: "2026-01-01T00:00:02.000Z",
  };
}

function assertNoPaths(view: unknown) {
  const text = JSON.stringify(view);
  for (const root of Object.values(roots)) {
    assert.ok(!text.includes(root), `a view carries ${root}: ${text}`);
  }
  for (const key of INTERNAL) {
    assert.equal(Object.hasOwn(view as object, key), false, `a view has "${key}"`);
  }
}

describe("SDK views", () => {
  it("show a VM without its record's paths or internal fields", () => {
    const rec = record();
    const paths = withRoots(roots, () => instancePaths(rec.name, rec.id));
    const info: VmInfo = { ...rec, paths, pids: { shim: 10, vmm: 11, sidecar: 12 } };
    const view = vmView(info);
    assertNoPaths(view);
    assert.deepEqual(view.image, {
      kind: "oci",
      reference: "docker.io/library/alpine:3",
      digest: `sha256:${"a".repeat(64)}`,
    });
    assert.deepEqual(view.ports, [{ hostIp: "127.0.0.1", hostPort: 8080, guestPort: 80 }]);
    assert.deepEqual(view.mounts, [
      { source: "/srv/data", target: "/data", readOnly: true, type: "9p" },
    ]);
    assert.deepEqual(view.disks, [
      { kind: "new", sizeMiB: 100 },
      { kind: "file", path: "/srv/disk.img", readOnly: true },
    ]);
    assert.deepEqual(view.pids, { shim: 10, vmm: 11 });
    assert.equal(view.accelerator, "kvm");
    assert.equal(view.memoryMiB, 256);
  });

  it("show snapshots, images and pools without paths", () => {
    const rec = record();
    const meta: SnapshotMeta = {
      format: 2,
      name: "base",
      createdAt: "2026-01-01T00:00:03.000Z",
      source: { name: "web", id: rec.id },
      backend: "qemu",
      vmmVersion: "QEMU emulator version 7.2.0",
      record: rec,
      state: [{ file: "memory.bin", sha256: "0".repeat(64), size: 1000, role: "memory" }],
      rootDisk: { file: "root.qcow2", sha256: "1".repeat(64), size: 200 },
      disks: [{ owned: false, path: "/srv/disk.img", format: "raw" }],
      pausedMs: 12,
    };
    const snap = snapshotView(meta);
    assertNoPaths(snap);
    assert.equal(snap.memoryBytes, 1000);
    assert.equal(snap.diskBytes, 200);

    const image: OciImage = {
      reference: "docker.io/library/alpine:3",
      manifestDigest: `sha256:${"a".repeat(64)}`,
      rootfs: "/cache-root/images/oci/aaaa/rootfs.ext4",
      config: { env: ["PATH=/bin"] },
      platform: "linux/amd64",
      sizeBytes: 1,
      pulledAt: "2026-01-01T00:00:00.000Z",
      layers: 1,
      layerDigests: [`sha256:${"b".repeat(64)}`],
      layerBytes: 1,
      configDigest: `sha256:${"c".repeat(64)}`,
    };
    assertNoPaths(ociImageView(image));
    assertNoPaths(poolView({ name: "p", size: 1, ready: ["p-1"], starting: 0, handedOut: 0 }));
  });
});
