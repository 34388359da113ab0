/**
 * Aborting a root filesystem build: unpacking stops (between or within layers), a running
 * ext4 tool is killed, and neither the image nor its staging tree nor a temp file is left.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import type { LayerBlob } from "../../src/images/oci/layers.js";
import { rootfsFromLayers, rootfsPath } from "../../src/images/oci/rootfs.js";
import { cachePaths } from "../../src/paths/layout.js";
import { withRoots } from "../../src/paths/roots.js";
import { writeSampleImage } from "../support/tar-fixtures.js";

const base = mkdtempSync(join(tmpdir(), "corral-oci-build-abort-"));
const roots = { stateDir: join(base, "state"), cacheDir: join(base, "cache") };
let layers: LayerBlob[] = [];

function isCancelled(err: unknown): boolean {
  assert.ok(isCorralError(err), String(err));
  assert.equal(err.kind, "cancelled", `${err.code}: ${err.message}`);
  return true;
}

function nothingLeft(manifest: string) {
  assert.equal(existsSync(rootfsPath(manifest)), false, "no image");
  assert.equal(existsSync(join(rootfsPath(manifest), "..")), false, "no image directory");
  assert.deepEqual(readdirSync(cachePaths.tmp()), [], "no staging tree");
}

describe("aborting a rootfs build", () => {
  before(async () => {
    const blobs = join(base, "blobs");
    mkdirSync(blobs);
    layers = await writeSampleImage(blobs);
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it("stops unpacking at the first layer's progress", async () => {
    await withRoots(roots, async () => {
      const manifest = `sha256:${"cd".repeat(32)}`;
      const controller = new AbortController();
      await assert.rejects(
        rootfsFromLayers({
          manifestDigest: manifest,
          layers,
          signal: controller.signal,
          onProgress: (e) => {
            if (e.phase === "unpack") controller.abort();
          },
        }),
        isCancelled,
      );
      nothingLeft(manifest);
    });
  });

  it("kills the ext4 build and removes its temp image", async () => {
    await withRoots(roots, async () => {
      const manifest = `sha256:${"ef".repeat(32)}`;
      const controller = new AbortController();
      await assert.rejects(
        rootfsFromLayers({
          manifestDigest: manifest,
          layers,
          signal: controller.signal,
          onProgress: (e) => {
            if (e.phase === "ext4") controller.abort();
          },
        }),
        isCancelled,
      );
      nothingLeft(manifest);
    });
  });

  it("refuses to start with a signal already aborted", async () => {
    await withRoots(roots, async () => {
      const manifest = `sha256:${"12".repeat(32)}`;
      await assert.rejects(
        rootfsFromLayers({ manifestDigest: manifest, layers, signal: AbortSignal.abort() }),
        isCancelled,
      );
      nothingLeft(manifest);
    });
  });
});
