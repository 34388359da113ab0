/**
 * A private state and cache directory for lifecycle tests on the fake backend: a stand-in
 * default image (the fake boots no kernel, but the lifecycle records which image a VM has)
 * and corral's agent built into that cache.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRoot } from "../../src/paths/layout.js";
import { withRoots } from "../../src/paths/roots.js";

export interface FakeHome {
  stateDir: string;
  cacheDir: string;
  remove(): void;
}

/**
 * New state and cache directories; CORRAL_STATE_DIR and CORRAL_CACHE_DIR point at them (this
 * test process only) unless `setEnv` is false (SDK tests pass them to `new Corral()`).
 */
export function fakeHome(options: { setEnv?: boolean } = {}): FakeHome {
  const root = mkdtempSync(join(tmpdir(), "corral-fake-"));
  const stateDir = join(root, "state");
  const cacheDir = join(root, "cache");
  if (options.setEnv !== false) {
    process.env.CORRAL_STATE_DIR = stateDir;
    process.env.CORRAL_CACHE_DIR = cacheDir;
  }
  const digest = createHash("sha256").update("fake image").digest("hex");
  const imageDir = join(cacheDir, "images", "corral-default", digest);
  mkdirSync(imageDir, { recursive: true });
  writeFileSync(join(imageDir, "vmlinux"), "not a kernel");
  writeFileSync(join(imageDir, "initrd.img"), "not an initramfs");
  writeFileSync(
    join(imageDir, "image.json"),
    JSON.stringify({
      name: "corral-default",
      version: "fake",
      digest,
      dir: imageDir,
      kernel: "vmlinux",
      initrd: "initrd.img",
      cmdline: "console=ttyS0",
      kernelRelease: "fake",
      createdAt: new Date().toISOString(),
      sizeBytes: 0,
      inputs: {},
    }),
  );
  writeFileSync(join(cacheDir, "images", "corral-default", "current"), digest);
  return {
    stateDir,
    cacheDir,
    remove() {
      rmSync(
        withRoots({ stateDir, cacheDir }, () => runRoot()),
        { recursive: true, force: true },
      );
      rmSync(root, { recursive: true, force: true });
    },
  };
}
