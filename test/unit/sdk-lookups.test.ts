/** Library lookups the CLI used to do itself: built-in images by name or digest, snapshot sizes. */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findBuiltinImage } from "../../src/images/store.js";
import { summarizeSnapshot } from "../../src/sdk/snapshot-summary.js";
import type { SnapshotMeta } from "../../src/vm/snapshot-store.js";

describe("findBuiltinImage", () => {
  const saved = process.env.CORRAL_CACHE_DIR;
  const cache = mkdtempSync(join(tmpdir(), "corral-images-"));
  const older = "a1".repeat(32);
  const newer = "b2".repeat(32);

  before(() => {
    process.env.CORRAL_CACHE_DIR = cache;
    for (const [digest, createdAt] of [
      [older, "2026-01-01T00:00:00.000Z"],
      [newer, "2026-02-01T00:00:00.000Z"],
    ] as const) {
      const dir = join(cache, "images", "corral-default", digest);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "vmlinux"), "k");
      writeFileSync(join(dir, "initrd.img"), "i");
      writeFileSync(
        join(dir, "image.json"),
        JSON.stringify({
          name: "corral-default",
          version: "1",
          digest,
          dir,
          kernel: join(dir, "vmlinux"),
          initrd: join(dir, "initrd.img"),
          cmdline: "console=ttyS0",
          kernelRelease: "6.1.0",
          createdAt,
          sizeBytes: 2,
          inputs: {},
        }),
      );
    }
  });

  after(() => {
    if (saved === undefined) delete process.env.CORRAL_CACHE_DIR;
    else process.env.CORRAL_CACHE_DIR = saved;
    rmSync(cache, { recursive: true, force: true });
  });

  it("finds the newest build by name", () => {
    assert.equal(findBuiltinImage("corral-default")?.digest, newer);
  });

  it("finds a build by digest or a prefix of at least 12 hex digits", () => {
    assert.equal(findBuiltinImage(older)?.digest, older);
    assert.equal(findBuiltinImage(`sha256:${older.slice(0, 12)}`)?.digest, older);
    assert.equal(findBuiltinImage(older.slice(0, 11)), undefined);
    assert.equal(findBuiltinImage("alpine"), undefined);
  });
});

describe("summarizeSnapshot", () => {
  it("counts the backend's state files and the disks the snapshot owns", () => {
    const meta = {
      name: "base",
      createdAt: "2026-12-01T00:00:00.000Z",
      source: { name: "box", id: "0123456789ab" },
      vmmVersion: "QEMU emulator version 7.2.0",
      record: { spec: { image: "corral-default" } },
      backend: "qemu",
      state: [
        { file: "memory.bin", role: "memory", sha256: "x", size: 900 },
        { file: "devices.bin", role: "state", sha256: "w", size: 100 },
      ],
      rootDisk: { file: "root.qcow2", sha256: "y", size: 200 },
      disks: [
        { owned: true, file: "disk0.qcow2", sha256: "z", size: 30 },
        { owned: false, path: "/srv/shared.img", format: "raw" },
      ],
      pausedMs: 42,
    } as unknown as SnapshotMeta;
    assert.deepEqual(summarizeSnapshot(meta), {
      name: "base",
      source: "box",
      createdAt: "2026-12-01T00:00:00.000Z",
      memoryBytes: 1000,
      diskBytes: 230,
      pausedMs: 42,
      image: "corral-default",
      vmm: "QEMU emulator version 7.2.0",
    });
  });
});
