/**
 * Aborting a pull: the registry requests, a blob download half-way (its temp file removed),
 * the wait between retries and a whole pullImage all stop at once with kind `cancelled`,
 * leaving no partial blob, image or reference behind.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { listOciImages, pullImage } from "../../src/images/oci-store.js";
import { cachePaths } from "../../src/paths/layout.js";
import { withRoots } from "../../src/paths/roots.js";
import { OciClient } from "../../src/protocols/oci/client.js";
import { MediaType } from "../../src/protocols/oci/media-types.js";
import { sha256 } from "../support/oci-push.js";
import { type FakeServer, startFakeServer } from "../support/registry.js";

const layer = Buffer.alloc(4 << 20, 7);
const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
const layerDesc = { mediaType: MediaType.ociLayerGzip, digest: sha256(layer), size: layer.length };
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
    layers: [layerDesc],
  }),
);

/** Serves the image; the layer's first 64 KiB at once, the rest never (a stalled download). */
function slowRegistry(onStalled: () => void, status = () => 200) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? "";
    if (url === "/v2/app/manifests/v1") {
      res.writeHead(200, {
        "content-type": MediaType.ociManifest,
        "docker-content-digest": sha256(manifest),
      });
      res.end(manifest);
    } else if (url === `/v2/app/blobs/${sha256(config)}`) {
      res.writeHead(200).end(config);
    } else if (url === `/v2/app/blobs/${sha256(layer)}`) {
      const code = status();
      if (code !== 200) {
        res.writeHead(code).end();
        onStalled();
        return;
      }
      res.writeHead(200, { "content-length": layer.length });
      res.write(layer.subarray(0, 64 * 1024), () => onStalled());
    } else {
      res.writeHead(404).end();
    }
  };
}

function blobFiles(): string[] {
  try {
    return readdirSync(join(cachePaths.blobs(), "sha256"));
  } catch {
    return [];
  }
}

async function rejectsCancelled(p: Promise<unknown>): Promise<number> {
  const started = Date.now();
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCorralError(err), String(err));
    assert.equal(err.kind, "cancelled", `${err.code}: ${err.message}`);
    return true;
  });
  return Date.now() - started;
}

describe("aborting pulls", () => {
  let server: FakeServer;
  let stalled: () => void = () => {};
  let status = () => 200;
  let cache: string;

  before(async () => {
    server = await startFakeServer(
      slowRegistry(
        () => stalled(),
        () => status(),
      ),
    );
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    if (cache !== undefined) rmSync(cache, { recursive: true, force: true });
    cache = mkdtempSync(join(tmpdir(), "corral-oci-abort-"));
    server.requests.length = 0;
    status = () => 200;
  });
  after(() => rmSync(cache, { recursive: true, force: true }));

  const roots = () => ({ stateDir: join(cache, "state"), cacheDir: cache });

  it("stops a blob download half-way and removes its temp file", async () => {
    await withRoots(roots(), async () => {
      const client = new OciClient({ dockerConfigPath: "/nonexistent" });
      const controller = new AbortController();
      stalled = () => controller.abort();
      try {
        const took = await rejectsCancelled(
          client.fetchBlob(`${server.host}/app`, layerDesc, { signal: controller.signal }),
        );
        assert.ok(took < 5_000, `took ${took} ms`);
      } finally {
        await client.close();
      }
      assert.deepEqual(blobFiles(), [], "no blob and no temp file");
      assert.equal(server.requests.length, 1, "an abort is not retried");
    });
  });

  it("stops waiting between retries", async () => {
    await withRoots(roots(), async () => {
      const client = new OciClient({
        dockerConfigPath: "/nonexistent",
        retry: { attempts: 5, backoffMs: 60_000 },
      });
      const controller = new AbortController();
      status = () => 503;
      stalled = () => setTimeout(() => controller.abort(), 20);
      try {
        const took = await rejectsCancelled(
          client.fetchBlob(`${server.host}/app`, layerDesc, { signal: controller.signal }),
        );
        assert.ok(took < 5_000, `took ${took} ms`);
      } finally {
        await client.close();
      }
      assert.equal(server.requests.length, 1);
    });
  });

  it("aborts a whole pull: no blob, no image, no reference", async () => {
    await withRoots(roots(), async () => {
      const controller = new AbortController();
      stalled = () => controller.abort();
      await rejectsCancelled(pullImage(`${server.host}/app:v1`, { signal: controller.signal }));
      assert.deepEqual(blobFiles(), []);
      assert.deepEqual(listOciImages(), []);
      const imageDir = join(cachePaths.images(), "oci", sha256(manifest).slice(7));
      assert.equal(existsSync(imageDir), false);
    });
  });

  it("refuses to start with a signal already aborted", async () => {
    await withRoots(roots(), async () => {
      await rejectsCancelled(pullImage(`${server.host}/app:v1`, { signal: AbortSignal.abort() }));
      assert.equal(server.requests.length, 0);
    });
  });
});
