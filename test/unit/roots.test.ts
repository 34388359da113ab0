/** Roots read once: an SDK instance's roots hold inside its operations, the environment outside. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { daemonEnv } from "../../src/daemon/client.js";
import { cachePaths, runRoot, stateRoot, vmsRoot } from "../../src/paths/layout.js";
import { rootsFromEnv, setting, withRoots } from "../../src/paths/roots.js";

const a = { stateDir: "/tmp/corral-roots-a/state", cacheDir: "/tmp/corral-roots-a/cache" };
const b = { stateDir: "/tmp/corral-roots-b/state", cacheDir: "/tmp/corral-roots-b/cache" };

describe("roots", () => {
  it("reads the environment once, into a copy", () => {
    const env: Record<string, string | undefined> = {
      CORRAL_STATE_DIR: "/s",
      CORRAL_CACHE_DIR: "/c",
      XDG_RUNTIME_DIR: "/run/user/1",
      CORRAL_DEBIAN_MIRROR: "http://mirror.invalid/debian",
    };
    const roots = rootsFromEnv(env);
    env.CORRAL_STATE_DIR = "/changed";
    assert.equal(roots.stateDir, "/s");
    assert.equal(roots.cacheDir, "/c");
    assert.equal(roots.runtimeBase, "/run/user/1/corral");
    assert.equal(
      withRoots(roots, () => setting("CORRAL_DEBIAN_MIRROR")),
      "http://mirror.invalid/debian",
    );
    assert.equal(
      withRoots(roots, () => setting("CORRAL_STATE_DIR")),
      "/s",
    );
  });

  it("defaults under the HOME it is given", () => {
    const roots = rootsFromEnv({ HOME: "/home/someone" });
    assert.equal(roots.stateDir, "/home/someone/.local/state/corral");
    assert.equal(roots.cacheDir, "/home/someone/.cache/corral");
  });

  it("keeps each operation's roots across awaits, with two at once", async () => {
    const seen = await Promise.all(
      [a, b, a].map((roots, i) =>
        withRoots(roots, async () => {
          await sleep(10 * (3 - i));
          return [stateRoot(), cachePaths.blobs(), vmsRoot()];
        }),
      ),
    );
    assert.deepEqual(seen, [
      [a.stateDir, join(a.cacheDir, "blobs"), join(a.stateDir, "vms")],
      [b.stateDir, join(b.cacheDir, "blobs"), join(b.stateDir, "vms")],
      [a.stateDir, join(a.cacheDir, "blobs"), join(a.stateDir, "vms")],
    ]);
    // Distinct state roots never share sockets.
    assert.notEqual(
      withRoots(a, () => runRoot()),
      withRoots(b, () => runRoot()),
    );
  });

  it("falls back to the environment outside an operation", () => {
    const saved = process.env.CORRAL_STATE_DIR;
    try {
      process.env.CORRAL_STATE_DIR = "/tmp/corral-roots-env";
      assert.equal(stateRoot(), "/tmp/corral-roots-env");
      assert.equal(
        withRoots(a, () => stateRoot()),
        a.stateDir,
      );
    } finally {
      if (saved === undefined) delete process.env.CORRAL_STATE_DIR;
      else process.env.CORRAL_STATE_DIR = saved;
    }
  });

  it("hands the daemon it spawns the roots in force", () => {
    const env = withRoots({ ...a, runtimeBase: "/tmp/corral-roots-run" }, () => daemonEnv());
    assert.equal(env.CORRAL_STATE_DIR, a.stateDir);
    assert.equal(env.CORRAL_CACHE_DIR, a.cacheDir);
    assert.equal(env.CORRAL_RUNTIME_DIR, "/tmp/corral-roots-run");
    const child = rootsFromEnv(env);
    assert.equal(child.stateDir, a.stateDir);
    assert.equal(child.runtimeBase, "/tmp/corral-roots-run");
  });
});
