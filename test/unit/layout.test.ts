import assert from "node:assert/strict";
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { qemuFiles } from "../../src/drivers/qemu/files.js";
import { isCorralError } from "../../src/errors.js";
import { ensurePrivateDir, instancePaths, runRoot } from "../../src/paths/layout.js";

describe("layout", () => {
  it("keeps socket paths short enough for sun_path", () => {
    const paths = instancePaths("a".repeat(63), "0123456789ab");
    const qemu = qemuFiles(paths.runDir);
    for (const socket of [
      qemu.qmpSocket,
      paths.vsockSocket,
      qemu.vhostUserSocket,
      paths.netSocket,
    ]) {
      assert.ok(Buffer.byteLength(`${socket}_65535`) < 108, socket);
    }
  });

  it("separates the sockets of different state roots", () => {
    const before = process.env.CORRAL_STATE_DIR;
    try {
      process.env.CORRAL_STATE_DIR = "/tmp/a";
      const a = runRoot();
      process.env.CORRAL_STATE_DIR = "/tmp/b";
      assert.notEqual(runRoot(), a);
    } finally {
      process.env.CORRAL_STATE_DIR = before;
    }
  });

  it("refuses a run directory that others can enter", () => {
    const before = process.env.XDG_RUNTIME_DIR;
    const base = mkdtempSync(join(tmpdir(), "rt-"));
    try {
      process.env.XDG_RUNTIME_DIR = base;
      const dir = ensurePrivateDir(join(runRoot(), "vm1"));
      assert.ok(dir.startsWith(base));
      chmodSync(join(base, "corral"), 0o755);
      assert.throws(
        () => ensurePrivateDir(join(runRoot(), "vm2")),
        (e) => isCorralError(e, "SETUP"),
      );
    } finally {
      process.env.XDG_RUNTIME_DIR = before;
    }
  });
});
