import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createEmptyDisk, createOverlay, probeDiskFormat } from "../../src/drivers/qemu/disks.js";
import { isCorralError } from "../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "corral-disk-"));

describe("disks", () => {
  it("probes raw and qcow2 by content, not by name", async () => {
    const raw = join(dir, "looks.qcow2");
    writeFileSync(raw, Buffer.alloc(1024 * 1024));
    assert.equal(await probeDiskFormat(raw, "--disk"), "raw");
    const qcow = join(dir, "plain.img");
    await createEmptyDisk(qcow, 16);
    assert.equal(await probeDiskFormat(qcow, "--disk"), "qcow2");
  });

  it("refuses an image whose header names a backing file (it could expose host files)", async () => {
    const secret = join(dir, "secret.raw");
    writeFileSync(secret, Buffer.alloc(64 * 1024));
    const planted = join(dir, "planted.img");
    await createOverlay(secret, planted);
    await assert.rejects(
      probeDiskFormat(planted, "--disk"),
      (e) => isCorralError(e, "INVALID_SPEC") && /backing file/.test(e.message),
    );
  });

  it("names a file that is not there", async () => {
    await assert.rejects(probeDiskFormat(join(dir, "none.img"), "--disk"), (e) =>
      isCorralError(e, "INVALID_SPEC"),
    );
  });

  it("creates overlays whose virtual size is the base's", async () => {
    const base = join(dir, "base.raw");
    writeFileSync(base, Buffer.alloc(4 * 1024 * 1024));
    const overlay = join(dir, "overlay.qcow2");
    await createOverlay(base, overlay);
    const info = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", overlay], { encoding: "utf8" }),
    );
    assert.equal(info["virtual-size"], 4 * 1024 * 1024);
    assert.equal(info["backing-filename"], base);
  });
});
