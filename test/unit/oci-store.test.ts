import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { ROOTFS_FILE } from "../../src/images/oci/rootfs.js";
import {
  findOciImage,
  listOciImages,
  pruneOciImages,
  removeOciImage,
} from "../../src/images/oci-store.js";
import { writeImageMeta } from "../../src/images/oci-store-meta.js";
import {
  markPull,
  matchRefs,
  ociStorePaths,
  type RefsIndex,
  readRefs,
  updateRefs,
} from "../../src/images/oci-store-refs.js";
import { cachePaths } from "../../src/paths/layout.js";

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const A = digest("a");
const B = `sha256:${"a".repeat(12)}${"b".repeat(52)}`;
const C = digest("c");
const LAYER1 = digest("1");
const LAYER2 = digest("2");
const LAYER3 = digest("3");

const saved = process.env.CORRAL_CACHE_DIR;
let cache: string;
before(() => {
  cache = mkdtempSync(join(tmpdir(), "corral-oci-store-"));
  process.env.CORRAL_CACHE_DIR = cache;
});
after(() => {
  rmSync(cache, { recursive: true, force: true });
  if (saved === undefined) delete process.env.CORRAL_CACHE_DIR;
  else process.env.CORRAL_CACHE_DIR = saved;
});
beforeEach(() => {
  rmSync(cache, { recursive: true, force: true });
  mkdirSync(cache);
});

/** An image as a pull leaves it: image.json, a (fake) rootfs, its layer blobs. */
function fakeImage(manifestDigest: string, layers: string[]): void {
  const dir = ociStorePaths.imageDir(manifestDigest);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ROOTFS_FILE), Buffer.alloc(8192, 1));
  writeImageMeta(dir, {
    version: 1,
    manifestDigest,
    configDigest: digest("f"),
    pulledAs: "x",
    rootfs: join(dir, ROOTFS_FILE),
    config: { env: ["A=1"], cmd: ["sh"] },
    platform: "linux/amd64",
    sizeBytes: 8192,
    layerDigests: layers,
    layerBytes: 10,
    builtAt: new Date().toISOString(),
  });
  for (const layer of layers) {
    mkdirSync(join(cachePaths.blobs(), "sha256"), { recursive: true });
    writeFileSync(cachePaths.blob(layer), "blob");
  }
}

async function addRef(ref: string, d: string): Promise<void> {
  await updateRefs((index) => {
    index.refs[ref] = { digest: d, pulledAt: new Date().toISOString() };
  });
}

describe("ref index lookups", () => {
  const index: RefsIndex = {
    version: 1,
    refs: {
      "docker.io/library/busybox:latest": { digest: A, pulledAt: "2024-01-01T00:00:00Z" },
      "127.0.0.1:5000/test/busybox:1": { digest: B, pulledAt: "2024-01-01T00:00:00Z" },
      "127.0.0.1:5000/test/busybox:2": { digest: B, pulledAt: "2024-01-01T00:00:00Z" },
      "ghcr.io/org/app:v1": { digest: C, pulledAt: "2024-01-01T00:00:00Z" },
    },
  };

  it("finds the short form the user typed and the normalized form", () => {
    assert.deepEqual(matchRefs(index, "busybox"), {
      refs: ["docker.io/library/busybox:latest"],
      digest: A,
    });
    assert.equal(matchRefs(index, "library/busybox:latest")?.digest, A);
    assert.equal(matchRefs(index, "127.0.0.1:5000/test/busybox:2")?.digest, B);
    assert.equal(matchRefs(index, "busybox:1"), undefined);
    assert.equal(matchRefs(index, "Not A Ref"), undefined);
  });

  it("finds a digest, a unique prefix of >= 12 hex digits, and name@digest", () => {
    assert.deepEqual(matchRefs(index, C), { refs: ["ghcr.io/org/app:v1"], digest: C });
    assert.equal(matchRefs(index, "cccccccccccc")?.digest, C);
    assert.equal(matchRefs(index, "sha256:cccccccccccc")?.digest, C);
    assert.equal(matchRefs(index, "ccccccccccc"), undefined, "11 digits are not enough");
    assert.deepEqual(matchRefs(index, `127.0.0.1:5000/test/busybox@${B}`)?.refs, [
      "127.0.0.1:5000/test/busybox:1",
      "127.0.0.1:5000/test/busybox:2",
    ]);
    assert.equal(matchRefs(index, `ghcr.io/org/other@${C}`), undefined);
  });

  it("refuses an ambiguous prefix", () => {
    assert.throws(
      () => matchRefs(index, "aaaaaaaaaaaa"),
      (err: unknown) =>
        isCorralError(err, "INVALID_ARGUMENT") && /matches 2 images/.test(err.message),
    );
    assert.equal(matchRefs(index, `${"a".repeat(13)}`)?.digest, A);
  });
});

describe("ref index updates", () => {
  it("loses no update when many writers race, in and across processes", async () => {
    const child = (prefix: string) =>
      new Promise<void>((resolve, reject) => {
        const script = `
          import { updateRefs } from ${JSON.stringify(join(process.cwd(), "src/images/oci-store-refs.ts"))};
          await Promise.all(Array.from({ length: 10 }, (_, i) => updateRefs((idx) => {
            idx.refs["${prefix}/r:" + i] = { digest: "${A}", pulledAt: "t" };
          })));`;
        const p = spawn(
          process.execPath,
          ["--import", "tsx", "--input-type=module", "-e", script],
          {
            env: process.env,
            stdio: ["ignore", "ignore", "inherit"],
          },
        );
        p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`child ${code}`))));
      });
    await Promise.all([
      child("127.0.0.1:1/a"),
      child("127.0.0.1:1/b"),
      ...Array.from({ length: 10 }, (_, i) => addRef(`127.0.0.1:1/c/r:${i}`, A)),
    ]);
    assert.equal(Object.keys(readRefs().refs).length, 30);
    assert.equal(existsSync(ociStorePaths.lock()), false, "the lock is released");
  });

  it("treats a corrupt index as empty instead of failing every command", () => {
    mkdirSync(ociStorePaths.root(), { recursive: true });
    writeFileSync(ociStorePaths.refs(), "{not json");
    assert.deepEqual(readRefs(), { version: 1, refs: {} });
  });
});

describe("store queries, rm and prune", () => {
  it("lists and finds images with a readable record and rootfs only", async () => {
    fakeImage(A, [LAYER1]);
    await addRef("docker.io/library/busybox:latest", A);
    await addRef("docker.io/library/ghost:1", C); // no image.json: a broken entry
    assert.deepEqual(
      listOciImages().map((i) => i.reference),
      ["docker.io/library/busybox:latest"],
    );
    const found = findOciImage("busybox");
    assert.equal(found?.manifestDigest, A);
    assert.equal(found?.rootfs, join(ociStorePaths.imageDir(A), ROOTFS_FILE));
    assert.deepEqual(found?.config, { env: ["A=1"], cmd: ["sh"] });
    assert.equal(found?.layers, 1);
    assert.equal(findOciImage("ghost:1"), undefined);
  });

  it("rm keeps the rootfs while another reference points at it", async () => {
    fakeImage(A, [LAYER1]);
    await addRef("docker.io/library/busybox:latest", A);
    await addRef("docker.io/library/busybox:1", A);
    const first = await removeOciImage("busybox");
    assert.deepEqual(first.refs, ["docker.io/library/busybox:latest"]);
    assert.equal(first.deleted, false);
    assert.ok(existsSync(ociStorePaths.imageDir(A)));
    const second = await removeOciImage(A.slice(0, 20));
    assert.equal(second.deleted, true);
    assert.ok(second.freedBytes > 0);
    assert.equal(existsSync(ociStorePaths.imageDir(A)), false);
    await assert.rejects(removeOciImage("busybox"), (err: unknown) =>
      isCorralError(err, "IMAGE_NOT_FOUND"),
    );
  });

  it("prune removes orphan rootfs dirs and unused blobs, sparing live pulls", async () => {
    fakeImage(A, [LAYER1, LAYER2]);
    fakeImage(B, [LAYER2, LAYER3]); // orphan: no reference
    fakeImage(C, []); // orphan too, but a pull in progress announced it
    await addRef("docker.io/library/busybox:latest", A);
    mkdirSync(join(cachePaths.blobs(), "sha256"), { recursive: true });
    const inflight = join(cachePaths.blobs(), "sha256", `.${"9".repeat(64)}.abcd.tmp`);
    writeFileSync(inflight, "partial");
    const unmark = await markPull([C]);
    try {
      const result = await pruneOciImages();
      assert.deepEqual(result.removed.images, [B]);
      assert.deepEqual(result.removed.blobs, [LAYER3]);
      assert.ok(result.freedBytes > 0);
    } finally {
      unmark();
    }
    assert.ok(existsSync(cachePaths.blob(LAYER1)) && existsSync(cachePaths.blob(LAYER2)));
    assert.ok(existsSync(inflight), "downloads in progress are not touched");
    assert.ok(existsSync(ociStorePaths.imageDir(C)));
    assert.deepEqual((await pruneOciImages()).removed.images, [C], "once the pull is gone");
  });

  it("ignores the marker of a dead pull", async () => {
    fakeImage(B, []);
    mkdirSync(ociStorePaths.pulls(), { recursive: true });
    const marker = join(ociStorePaths.pulls(), "999999999-dead.json");
    writeFileSync(marker, JSON.stringify({ pid: 999_999_999, digests: [B] }));
    assert.deepEqual((await pruneOciImages()).removed.images, [B]);
    assert.equal(existsSync(marker), false);
  });
});
