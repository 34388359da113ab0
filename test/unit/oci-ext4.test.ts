import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  lchownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { applyLayers } from "../../src/images/oci/apply.js";
import { buildExt4, imageGeometry } from "../../src/images/oci/ext4.js";
import type { LayerBlob } from "../../src/images/oci/layers.js";
import { measureTree } from "../../src/images/oci/measure.js";
import { rootfsFromLayers, rootfsPath } from "../../src/images/oci/rootfs.js";
import {
  ABSENT_PATHS,
  CAPABILITY_XATTR,
  EXPECTED_TREE,
  type ExpectedType,
  FIXTURE_MTIME,
  writeBlob,
  writeSampleImage,
} from "../support/tar-fixtures.js";

const isRoot = process.getuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), "corral-oci-ext4-"));
after(() => rmSync(base, { recursive: true, force: true }));
const blobs = join(base, "blobs");
mkdirSync(blobs);
let layers: LayerBlob[] = [];
before(async () => {
  layers = await writeSampleImage(blobs);
});

interface InodeInfo {
  inode: number;
  type: ExpectedType | "other";
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  target?: string;
  device?: [number, number];
}

const TYPES: Record<string, ExpectedType> = {
  regular: "file",
  directory: "dir",
  symlink: "symlink",
  "character special": "char",
  "block special": "block",
  FIFO: "fifo",
};

function debugfs(image: string, script: string[]): string {
  const file = join(base, "script");
  writeFileSync(file, `${script.join("\n")}\n`);
  const result = spawnSync("debugfs", ["-f", file, image], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

/** `stat` of each path in one debugfs run; undefined for paths that do not exist. */
function statAll(image: string, paths: string[]): Map<string, InodeInfo | undefined> {
  const out = debugfs(
    image,
    paths.map((p) => `stat "/${p}"`),
  );
  const sections = out.split(/^debugfs: stat .*$/m).slice(1);
  const result = new Map<string, InodeInfo | undefined>();
  for (const [i, path] of paths.entries()) {
    const text = sections[i] ?? "";
    const head = /Inode: (\d+)\s+Type: (.+?)\s+Mode:\s+(\d+)/.exec(text);
    if (head === null) {
      result.set(path, undefined);
      continue;
    }
    const owner = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(text);
    const mtime = /mtime: 0x([0-9a-f]+)/.exec(text);
    const link = /Fast link dest: "(.*)"/.exec(text);
    const dev = /Device major\/minor number: ([0-9a-f]+):([0-9a-f]+)/.exec(text);
    result.set(path, {
      inode: Number(head[1]),
      type: TYPES[head[2] ?? ""] ?? "other",
      mode: Number.parseInt(head[3] ?? "", 8),
      uid: Number(owner?.[1]),
      gid: Number(owner?.[2]),
      mtime: Number.parseInt(mtime?.[1] ?? "0", 16),
      target: link?.[1],
      device: dev === null ? undefined : [Number(dev[1]), Number(dev[2])],
    });
  }
  return result;
}

function cat(image: string, path: string): string {
  const result = spawnSync("debugfs", ["-R", `cat "/${path}"`, image], { encoding: "utf8" });
  return result.stdout;
}

function xattr(image: string, path: string, name: string): string {
  return spawnSync("debugfs", ["-R", `ea_get "/${path}" ${name}`, image], { encoding: "utf8" })
    .stdout;
}

function assertImageMatches(image: string): void {
  const fsck = spawnSync("e2fsck", ["-fn", image], { encoding: "utf8" });
  assert.equal(fsck.status, 0, fsck.stdout);
  const paths = [...Object.keys(EXPECTED_TREE), ...ABSENT_PATHS, "", "bin/hard", "dev"];
  const stats = statAll(image, paths);
  for (const [path, want] of Object.entries(EXPECTED_TREE)) {
    const got = stats.get(path);
    assert.ok(got, `${path} exists in the image`);
    assert.equal(got.type, want.type, `${path} type`);
    assert.equal(got.mode, want.mode, `${path} mode`);
    assert.equal(got.uid, want.uid ?? 0, `${path} uid`);
    assert.equal(got.gid, want.gid ?? 0, `${path} gid`);
    if (want.target !== undefined) assert.equal(got.target, want.target, `${path} target`);
    if (want.device !== undefined) assert.deepEqual(got.device, want.device, `${path} device`);
    if (want.content !== undefined) assert.equal(cat(image, path), want.content, `${path} content`);
    if (!want.implicit) assert.equal(got.mtime, FIXTURE_MTIME.getTime() / 1000, `${path} mtime`);
  }
  for (const path of ABSENT_PATHS) assert.equal(stats.get(path), undefined, `${path} absent`);
  assert.equal(stats.get("bin/hard")?.inode, stats.get("bin/sh")?.inode, "hardlink kept");
  assert.equal(stats.get("usr/bin/su2")?.inode, stats.get("bin/su")?.inode, "cross-layer link");
  const root = stats.get("");
  assert.deepEqual([root?.mode, root?.uid, root?.gid], [0o755, 0, 0]);
  assert.equal(root?.mtime, FIXTURE_MTIME.getTime() / 1000);
  assert.match(xattr(image, "xattr/file", "user.comment"), /"hello"/);
  const hex = [...CAPABILITY_XATTR].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  assert.ok(xattr(image, "xattr/file", "security.capability").includes(hex));
}

describe("buildExt4", () => {
  it("builds an image whose tree matches the layers (staged as root)", {
    skip: !isRoot,
  }, async () => {
    const staged = await applyLayers(layers, join(base, "stage-chown"), { ownership: "chown" });
    const image = join(base, "chown.ext4");
    const result = await buildExt4(staged.dir, image, {
      fixups: staged.fixups,
      ownership: staged.ownership,
      label: "test-rootfs",
    });
    assert.equal(result.sizeBytes, 128 * 1024 * 1024);
    assertImageMatches(image);
    const label = spawnSync("e2label", [image], { encoding: "utf8" }).stdout.trim();
    assert.equal(label, "test-rootfs");
    assert.deepEqual(
      readdirSync(base).filter((n) => n.endsWith(".tmp")),
      [],
    );
  });

  it("applies recorded owners and modes (the non-root path)", async () => {
    const staged = await applyLayers(layers, join(base, "stage-record"), { ownership: "record" });
    if (isRoot) {
      // As a non-root user would have staged it: everything owned by that user.
      for (const { rel } of (await measureTree(staged.dir)).entries) {
        lchownSync(join(staged.dir, rel), 12345, 12345);
      }
    }
    const image = join(base, "record.ext4");
    await buildExt4(staged.dir, image, { fixups: staged.fixups, ownership: "record" });
    assertImageMatches(image);
  });

  it("sizes from content plus headroom, with inodes to spare", () => {
    const MiB = 1024 * 1024;
    assert.equal(imageGeometry(1 * MiB, 10).sizeBytes, 128 * MiB);
    const big = imageGeometry(1024 * MiB, 300_000);
    assert.ok(big.sizeBytes >= 1024 * MiB * 1.2 + 64 * MiB + 32 * MiB, `${big.sizeBytes}`);
    assert.equal(big.sizeBytes % (4 * MiB), 0);
    assert.ok(big.inodes >= 360_000);
    assert.equal(imageGeometry(0, 0, { minBytes: 8 * MiB, headroomBytes: 0 }).sizeBytes, 8 * MiB);
  });
});

describe("rootfsFromLayers", () => {
  const cache = join(base, "cache");
  const saved = process.env.CORRAL_CACHE_DIR;
  before(() => {
    process.env.CORRAL_CACHE_DIR = cache;
  });
  after(() => {
    if (saved === undefined) delete process.env.CORRAL_CACHE_DIR;
    else process.env.CORRAL_CACHE_DIR = saved;
  });
  const manifest = `sha256:${"ab".repeat(32)}`;

  it("builds once, then answers from the cache", async () => {
    const first = await rootfsFromLayers({ manifestDigest: manifest, layers });
    assert.equal(first.cached, false);
    assert.equal(first.path, join(cache, "images", "oci", "ab".repeat(32), "rootfs.ext4"));
    assert.equal(first.path, rootfsPath(manifest));
    assertImageMatches(first.path);
    const started = performance.now();
    const second = await rootfsFromLayers({ manifestDigest: manifest, layers });
    assert.ok(performance.now() - started < 50);
    assert.deepEqual(second, { ...first, cached: true });
    assert.deepEqual(readdirSync(join(cache, "tmp")), [], "staging removed");
  });

  it("leaves nothing behind when a layer is corrupt", async () => {
    const corrupt = writeBlob(
      blobs,
      Buffer.from("this is not gzip"),
      "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    const digest = `sha256:${"cd".repeat(32)}`;
    await assert.rejects(
      rootfsFromLayers({ manifestDigest: digest, layers: [layers[0]!, corrupt] }),
      (err: unknown) => isCorralError(err, "IMAGE_LAYER") && err.message.includes(corrupt.digest),
    );
    assert.ok(!existsSync(join(rootfsPath(digest), "..")), "no image directory");
    assert.deepEqual(readdirSync(join(cache, "tmp")), [], "no staging directory");
  });

  it("refuses a manifest digest that is not sha256", async () => {
    await assert.rejects(rootfsFromLayers({ manifestDigest: "sha256:../../x", layers }), (err) =>
      isCorralError(err, "INVALID_ARGUMENT"),
    );
  });
});
