import assert from "node:assert/strict";
import { chmodSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { qemuFiles, virtiofsSocket } from "../../src/drivers/qemu/files.js";
import { isCorralError } from "../../src/errors.js";
import {
  checkSocketPath,
  daemonPaths,
  ensurePrivateDir,
  instancePaths,
  LONGEST_SOCKET_NAME,
  runRoot,
  SOCKET_PATH_MAX,
} from "../../src/paths/layout.js";

/** Runs `fn` with XDG_RUNTIME_DIR set to `value` (or unset), restoring it afterwards. */
function withRuntimeDir<T>(value: string | undefined, fn: () => T): T {
  const before = process.env.XDG_RUNTIME_DIR;
  try {
    if (value === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = value;
    return fn();
  } finally {
    if (before === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = before;
  }
}

describe("layout", () => {
  it("keeps every socket path within macOS's 104-byte sun_path", () => {
    // The longest runtime directory still used, and none (/tmp/corral-<uid>).
    for (const runtime of [`/${"r".repeat(38)}`, undefined]) {
      withRuntimeDir(runtime, () => {
        const paths = instancePaths("a".repeat(63), "0123456789ab");
        const sockets = [
          qemuFiles(paths.runDir).qmpSocket,
          paths.vsockSocket,
          qemuFiles(paths.runDir).vhostUserSocket,
          paths.netSocket,
          qemuFiles(paths.runDir).migrationSocket,
          `${paths.vsockSocket}_${2 ** 32 - 1}`,
          virtiofsSocket(paths.runDir, 15),
          daemonPaths().socket,
        ];
        for (const socket of sockets) {
          assert.ok(Buffer.byteLength(socket) <= SOCKET_PATH_MAX, `${socket} (${runtime})`);
          assert.ok(
            Buffer.byteLength(socket) <= Buffer.byteLength(join(paths.runDir, LONGEST_SOCKET_NAME)),
            `${socket} is longer than the name the layout checks`,
          );
        }
      });
    }
    assert.equal(SOCKET_PATH_MAX + 1, 104, "macOS's sun_path, NUL included");
  });

  it("never puts sockets under a long runtime directory (or macOS's long $TMPDIR)", () => {
    const tmpdirBefore = process.env.TMPDIR;
    process.env.TMPDIR = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T/";
    try {
      withRuntimeDir(`/${"r".repeat(60)}`, () => {
        assert.ok(runRoot().startsWith(`/tmp/corral-${process.getuid?.()}/`), runRoot());
      });
      withRuntimeDir(undefined, () => assert.ok(runRoot().startsWith("/tmp/corral-")));
      withRuntimeDir("/run/user/1000", () =>
        assert.ok(runRoot().startsWith("/run/user/1000/corral/")),
      );
    } finally {
      if (tmpdirBefore === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmpdirBefore;
    }
  });

  it("refuses a socket path the kernel would cut, saying how to shorten it", () => {
    assert.equal(checkSocketPath(`/${"s".repeat(102)}`), `/${"s".repeat(102)}`);
    assert.throws(
      () => checkSocketPath(`/${"s".repeat(103)}`),
      (e) => isCorralError(e, "SETUP") && /XDG_RUNTIME_DIR/.test(e.hint ?? ""),
    );
    // A record whose id is not the 12 hex digits corral writes: checked where paths are built.
    assert.throws(
      () => instancePaths("box", "f".repeat(64)),
      (e) => isCorralError(e, "SETUP"),
    );
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
    // Not tmpdir(): on macOS it is too long to hold sockets, and the layout would not use it.
    const base = mkdtempSync("/tmp/rt-");
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
