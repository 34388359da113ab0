import assert from "node:assert/strict";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { isCorralError } from "../../src/errors.js";
import { applyLayers } from "../../src/images/oci/apply.js";
import type { LayerBlob } from "../../src/images/oci/layers.js";
import {
  ABSENT_PATHS,
  CAPABILITY_XATTR,
  EXPECTED_TREE,
  FIXTURE_MTIME,
  type TarEntry,
  tarBuffer,
  writeBlob,
  writeLayer,
  writeSampleImage,
} from "../support/tar-fixtures.js";

const isRoot = process.getuid?.() === 0;
const base = mkdtempSync(join(tmpdir(), "corral-oci-layers-"));
after(() => rmSync(base, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string) => join(base, `${name}-${counter++}`);

describe("applyLayers: a multi-layer image", async () => {
  const blobs = fresh("blobs");
  mkdirSync(blobs);
  const layers = await writeSampleImage(blobs);

  it("produces the expected tree (as root: real owners)", { skip: !isRoot }, async () => {
    const target = fresh("root");
    const events: string[] = [];
    const staged = await applyLayers(layers, target, {
      ownership: "chown",
      onProgress: (e) => {
        if (e.done) events.push(e.label);
      },
    });
    assert.deepEqual(
      events,
      layers.map((l) => l.digest),
    );
    for (const [path, want] of Object.entries(EXPECTED_TREE)) {
      const abs = join(target, path);
      const st = lstatSync(abs);
      if (want.type === "char" || want.type === "block" || want.type === "fifo") {
        assert.ok(st.isFile() && st.size === 0, `${path} is a placeholder`);
        const fix = staged.fixups.get(path);
        assert.equal(fix?.device?.kind, want.type, path);
        assert.equal(fix?.mode, want.mode, path);
        if (want.device) assert.deepEqual([fix?.device?.major, fix?.device?.minor], want.device);
        continue;
      }
      const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : "file";
      assert.equal(type, want.type, path);
      if (want.type !== "symlink") assert.equal(st.mode & 0o7777, want.mode, `${path} mode`);
      assert.equal(st.uid, want.uid ?? 0, `${path} uid`);
      assert.equal(st.gid, want.gid ?? 0, `${path} gid`);
      if (want.content !== undefined) assert.equal(readFileSync(abs, "utf8"), want.content, path);
      if (want.target !== undefined) assert.equal(readlinkSync(abs), want.target, path);
    }
    for (const path of ABSENT_PATHS) assert.ok(!existsSync(join(target, path)), `${path} absent`);
    assert.equal(lstatSync(join(target, "bin/hard")).ino, lstatSync(join(target, "bin/sh")).ino);
    assert.equal(lstatSync(join(target, "usr/bin/su2")).ino, lstatSync(join(target, "bin/su")).ino);
    assert.equal(lstatSync(join(target, "etc/passwd")).mtimeMs, FIXTURE_MTIME.getTime());
    assert.equal(lstatSync(join(target, "ro")).mtimeMs, FIXTURE_MTIME.getTime());
    const xattrs = staged.fixups.get("xattr/file")?.xattrs;
    assert.deepEqual(xattrs?.["user.comment"], Buffer.from("hello"));
    assert.deepEqual(xattrs?.["security.capability"], CAPABILITY_XATTR);
    assert.deepEqual(staged.warnings, []);
  });

  it("records owners and modes when it cannot chown", async () => {
    const target = fresh("record");
    const staged = await applyLayers(layers, target, { ownership: "record" });
    assert.deepEqual(staged.fixups.get("home/user/file"), { uid: 1000, gid: 1000, mode: 0o600 });
    assert.equal(staged.fixups.get("bin/su")?.mode, 0o4755);
    assert.equal(staged.fixups.get("usr/bin/su2")?.mode, 0o4755, "hardlinks share the record");
    assert.equal(staged.fixups.get("usr/bin")?.mode, 0o755, "implicit parents are root's 0755");
    assert.equal(staged.fixups.get("etc/old.conf"), undefined, "whited-out entries are forgotten");
    assert.equal(staged.fixups.get("opt/app/lower1"), undefined);
    // Staged so the owner can always read and traverse (mke2fs -d runs as that owner).
    assert.equal(lstatSync(join(target, "ro")).mode & 0o7777, 0o755);
    assert.equal(lstatSync(join(target, "ro/file")).mode & 0o7777, 0o444);
    assert.equal(readFileSync(join(target, "home/user/file"), "utf8"), "mine v2");
  });
});

describe("applyLayers: layer formats", () => {
  it("refuses an unknown media type", async () => {
    const blob = writeBlob(base, await tarBuffer([{ name: "a", data: "a" }]), "application/x-foo");
    await assert.rejects(applyLayers([blob], fresh("mt")), (err: unknown) => {
      assert.ok(isCorralError(err, "IMAGE_LAYER"));
      assert.match(err.message, /application\/x-foo/);
      return true;
    });
  });

  it("reports a corrupt gzip layer with its digest", async () => {
    const good = gzipSync(await tarBuffer([{ name: "a", data: "a".repeat(100_000) }]));
    const blob = writeBlob(
      base,
      good.subarray(0, good.length - 40),
      "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    await assert.rejects(applyLayers([blob], fresh("corrupt")), (err: unknown) => {
      assert.ok(isCorralError(err, "IMAGE_LAYER"));
      assert.ok(err.message.includes(blob.digest), err.message);
      return true;
    });
  });

  it("needs zstd for zstd layers and says how to get it", async () => {
    const blob = await writeLayer(base, [{ name: "a", data: "a" }], "zstd");
    const saved = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      // which() also looks in /usr/sbin and /sbin; zstd lives in /usr/bin.
      await assert.rejects(applyLayers([blob], fresh("zstd")), (err: unknown) => {
        assert.ok(isCorralError(err, "TOOL_MISSING"));
        assert.equal(err.hint, "apt-get install zstd");
        return true;
      });
    } finally {
      process.env.PATH = saved;
    }
  });

  it("skips data carried by a whiteout entry and goes on", async () => {
    const blob = await writeLayer(base, [
      { name: ".wh.gone", data: "junk".repeat(1000) },
      { name: "after", data: "ok" },
    ]);
    const target = fresh("whdata");
    await applyLayers([blob], target);
    assert.deepEqual(readdirSync(target), ["after"]);
    assert.equal(readFileSync(join(target, "after"), "utf8"), "ok");
  });

  it("strips a leading / like docker", async () => {
    const blob = await writeLayer(base, [{ name: "/abs/file", data: "ok" }]);
    const target = fresh("abs");
    await applyLayers([blob], target);
    assert.equal(readFileSync(join(target, "abs/file"), "utf8"), "ok");
  });

  it("follows a relative symlinked parent that stays inside (usrmerge's lib -> usr/lib)", async () => {
    const blob = await writeLayer(base, [
      { name: "usr/lib/", type: "directory" },
      { name: "lib", type: "symlink", linkname: "usr/lib" },
      { name: "lib/libc.so", data: "libc" },
    ]);
    const target = fresh("usrmerge");
    await applyLayers([blob], target);
    assert.equal(readFileSync(join(target, "usr/lib/libc.so"), "utf8"), "libc");
    assert.ok(lstatSync(join(target, "lib")).isSymbolicLink());
  });
});

describe("applyLayers: malicious layers are refused and write nothing outside", () => {
  const sentinel = join(base, "sentinel");
  mkdirSync(sentinel);
  writeFileSync(join(sentinel, "secret"), "host secret");
  const sentinelState = () =>
    readdirSync(sentinel)
      .map((name) => `${name}:${readFileSync(join(sentinel, name), "utf8")}`)
      .join(",");
  const before = sentinelState();

  const cases: { name: string; layers: TarEntry[][]; entry: string }[] = [
    { name: "a .. component", layers: [[{ name: "../escape", data: "x" }]], entry: "../escape" },
    {
      name: "an absolute path climbing out",
      layers: [[{ name: "/abs/../../x", data: "x" }]],
      entry: "/abs/../../x",
    },
    {
      name: "a file through an absolute symlink planted by a lower layer",
      layers: [
        [{ name: "etc", type: "symlink", linkname: sentinel }],
        [{ name: "etc/pwned", data: "x" }],
      ],
      entry: "etc/pwned",
    },
    {
      name: "a file through a relative symlink climbing out",
      layers: [
        [
          { name: "a/", type: "directory" },
          { name: "a/up", type: "symlink", linkname: "../../sentinel" },
        ],
        [{ name: "a/up/pwned", data: "x" }],
      ],
      entry: "a/up/pwned",
    },
    {
      name: "a chain of symlinks climbing out",
      layers: [
        [
          { name: "one", type: "symlink", linkname: "two/.." },
          { name: "two", type: "symlink", linkname: ".." },
          { name: "one/sentinel/pwned", data: "x" },
        ],
      ],
      entry: "one/sentinel/pwned",
    },
    {
      name: "a directory through a symlink in the same layer",
      layers: [
        [
          { name: "d", type: "symlink", linkname: sentinel },
          { name: "d/sub/", type: "directory" },
        ],
      ],
      entry: "d/sub/",
    },
    {
      name: "a hardlink to a path outside",
      layers: [[{ name: "hl", type: "link", linkname: "../sentinel/secret" }]],
      entry: "hl",
    },
    {
      name: "a hardlink through a symlinked parent",
      layers: [
        [{ name: "evil", type: "symlink", linkname: sentinel }],
        [{ name: "hl", type: "link", linkname: "evil/secret" }],
      ],
      entry: "hl",
    },
    {
      name: "a whiteout through a symlinked parent",
      layers: [
        [{ name: "evil", type: "symlink", linkname: sentinel }],
        [{ name: "evil/.wh.secret" }],
      ],
      entry: "evil/.wh.secret",
    },
    { name: "a whiteout of ..", layers: [[{ name: "a/.wh.." }]], entry: "a/.wh.." },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const layers: LayerBlob[] = [];
      for (const entries of c.layers) layers.push(await writeLayer(base, entries, "none"));
      const last = layers[layers.length - 1]!;
      await assert.rejects(applyLayers(layers, fresh("evil")), (err: unknown) => {
        assert.ok(isCorralError(err, "IMAGE_LAYER"), String(err));
        assert.ok(err.message.includes(last.digest), err.message);
        assert.ok(err.message.includes(`"${c.entry}"`), err.message);
        assert.deepEqual(err.details, { digest: last.digest, entry: c.entry });
        return true;
      });
      assert.equal(sentinelState(), before);
      assert.deepEqual(
        readdirSync(base).filter((n) => ["x", "escape", "pwned"].includes(n)),
        [],
      );
    });
  }
});
