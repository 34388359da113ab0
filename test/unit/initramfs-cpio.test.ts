import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import { isCorralError } from "../../src/errors.js";
import {
  type CpioEntry,
  FIXED_MTIME,
  prepareEntries,
  writeGzipCpio,
} from "../../src/images/initramfs/cpio.js";

const dir = mkdtempSync(join(tmpdir(), "corral-cpio-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Parsed {
  name: string;
  mode: number;
  uid: number;
  mtime: number;
  rdev: [number, number];
  data: Buffer;
}

/** An independent newc reader, to check the writer against the format, not against itself. */
function parseNewc(buf: Buffer): Parsed[] {
  const out: Parsed[] = [];
  let at = 0;
  const align = (n: number) => (n + 3) & ~3;
  for (;;) {
    assert.equal(buf.toString("latin1", at, at + 6), "070701");
    const f = (i: number) =>
      Number.parseInt(buf.toString("latin1", at + 6 + i * 8, at + 14 + i * 8), 16);
    const namesize = f(11);
    const size = f(6);
    const name = buf.toString("utf8", at + 110, at + 110 + namesize - 1);
    const dataAt = align(at + 110 + namesize);
    if (name === "TRAILER!!!") return out;
    out.push({
      name,
      mode: f(1),
      uid: f(2),
      mtime: f(5),
      rdev: [f(9), f(10)],
      data: buf.subarray(dataAt, dataAt + size),
    });
    at = align(dataAt + size);
  }
}

const source = join(dir, "big.bin");
writeFileSync(source, Buffer.alloc(100_003, 7));
const ENTRIES: CpioEntry[] = [
  { path: "sbin/init", type: "symlink", target: "/bin/busybox" },
  { path: "bin/busybox", type: "file", mode: 0o755, source },
  { path: "etc/hosts", type: "file", mode: 0o644, data: Buffer.from("127.0.0.1 localhost\n") },
  { path: "dev/console", type: "char", mode: 0o600, major: 5, minor: 1 },
  { path: "tmp", type: "directory", mode: 0o1777 },
  { path: "bin-extra", type: "directory" },
];

describe("cpio newc writer", () => {
  it("adds parents and orders every parent before its children", () => {
    const names = prepareEntries(ENTRIES).map((e) => e.path);
    assert.deepEqual(names, [
      "bin",
      "bin/busybox",
      "bin-extra",
      "dev",
      "dev/console",
      "etc",
      "etc/hosts",
      "sbin",
      "sbin/init",
      "tmp",
    ]);
  });

  it("refuses duplicates and escaping paths", () => {
    assert.throws(
      () => prepareEntries([ENTRIES[2]!, ENTRIES[2]!]),
      (e) => isCorralError(e, "IMAGE_BUILD"),
    );
    assert.throws(
      () => prepareEntries([{ path: "../x", type: "directory" }]),
      (e) => isCorralError(e, "IMAGE_BUILD"),
    );
  });

  it("writes a gzip archive that parses back with the right modes, owners and contents", async () => {
    const out = join(dir, "a.cpio.gz");
    const written = await writeGzipCpio(ENTRIES, out);
    const raw = gunzipSync(readFileSync(out));
    assert.equal(raw.length, written.uncompressedSize);
    assert.equal(raw.length % 4, 0);
    const parsed = new Map(parseNewc(raw).map((p) => [p.name, p]));
    assert.equal(parsed.get("bin/busybox")?.mode, 0o100755);
    assert.deepEqual(parsed.get("bin/busybox")?.data, readFileSync(source));
    assert.equal(parsed.get("sbin/init")?.mode, 0o120777);
    assert.equal(parsed.get("sbin/init")?.data.toString(), "/bin/busybox");
    assert.equal(parsed.get("tmp")?.mode, 0o41777);
    assert.deepEqual(parsed.get("dev/console")?.rdev, [5, 1]);
    assert.equal(parsed.get("dev/console")?.mode, 0o20600);
    for (const p of parsed.values()) {
      assert.equal(p.uid, 0);
      assert.equal(p.mtime, FIXED_MTIME);
    }
  });

  it("is reproducible byte for byte", async () => {
    await writeGzipCpio(ENTRIES, join(dir, "1.gz"));
    await writeGzipCpio([...ENTRIES].reverse(), join(dir, "2.gz"));
    assert.deepEqual(readFileSync(join(dir, "1.gz")), readFileSync(join(dir, "2.gz")));
  });

  it("lists with GNU cpio", { skip: spawnSync("cpio", ["--version"]).status !== 0 }, async () => {
    const out = join(dir, "gnu.gz");
    await writeGzipCpio(ENTRIES, out);
    const r = spawnSync("cpio", ["-t", "-v", "--quiet"], { input: gunzipSync(readFileSync(out)) });
    assert.equal(r.status, 0, r.stderr.toString());
    const lines = r.stdout.toString().trim().split("\n");
    assert.equal(lines.length, 10);
    assert.ok(lines.some((l) => /^lrwxrwxrwx .* sbin\/init -> \/bin\/busybox$/.test(l)));
    assert.ok(lines.some((l) => /^crw------- .* 5, +1 .* dev\/console$/.test(l)));
    assert.ok(lines.some((l) => /^-rwxr-xr-x .* 100003 .* bin\/busybox$/.test(l)));
  });
});
