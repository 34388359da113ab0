import assert from "node:assert/strict";
import {
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { listArMembers, parseArHeader } from "../../src/images/debian/ar.js";
import { extractDeb, readDebFiles, safeEntryPath } from "../../src/images/debian/extract.js";
import { makeAr, makeDeb, type TarEntry } from "./debian-fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "corral-deb-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(data: Buffer): string {
  const path = join(dir, `f${n++}.deb`);
  writeFileSync(path, data);
  return path;
}

describe("ar", () => {
  it("lists members with offsets, handling odd sizes and GNU '/' names", async () => {
    const path = file(
      makeAr([
        ["debian-binary", Buffer.from("2.0\n")],
        ["odd/", Buffer.from("abc")],
        ["next", Buffer.from("xy")],
      ]),
    );
    const members = await listArMembers(path);
    assert.deepEqual(
      members.map((m) => [m.name, m.size]),
      [
        ["debian-binary", 4],
        ["odd", 3],
        ["next", 2],
      ],
    );
    const raw = readFileSync(path);
    const next = members[2];
    assert.ok(next !== undefined);
    assert.equal(raw.toString("latin1", next.offset, next.offset + next.size), "xy");
  });
  it("rejects non-ar files and bad headers", async () => {
    await assert.rejects(listArMembers(file(Buffer.from("PK\x03\x04 not ar"))), (e) =>
      isCorralError(e, "ARCHIVE"),
    );
    assert.throws(
      () => parseArHeader(Buffer.alloc(60, 0x20), 8),
      (e) => isCorralError(e, "ARCHIVE"),
    );
  });
});

describe("safeEntryPath", () => {
  it("normalizes ./ prefixes", () => {
    assert.equal(safeEntryPath("./usr/bin/x"), "usr/bin/x");
    assert.equal(safeEntryPath("./"), "");
  });
  it("refuses absolute paths and ..", () => {
    assert.throws(
      () => safeEntryPath("/etc/passwd"),
      (e) => isCorralError(e, "ARCHIVE"),
    );
    assert.throws(
      () => safeEntryPath("./usr/../../etc"),
      (e) => isCorralError(e, "ARCHIVE"),
    );
  });
});

const TREE: TarEntry[] = [
  { name: "./", type: "directory" },
  { name: "./usr/", type: "directory" },
  { name: "./usr/bin/", type: "directory" },
  { name: "./usr/bin/tool", content: "binary", mode: 0o755 },
  { name: "./usr/bin/tool-alias", type: "symlink", linkname: "tool" },
  { name: "./usr/bin/tool-hard", type: "link", linkname: "./usr/bin/tool" },
  { name: "./usr/share/doc/readme", content: "docs" },
];

describe("extractDeb", () => {
  for (const compression of ["gz", "xz"] as const) {
    it(`extracts only the selected entries of a data.tar.${compression}, keeping modes and links`, async () => {
      const deb = file(await makeDeb(TREE, compression));
      const dest = join(dir, `out-${compression}`);
      const got = await extractDeb(deb, dest, (p) => p.startsWith("usr/bin/"));
      assert.deepEqual(
        got.map((e) => [e.path, e.type]),
        [
          ["usr/bin/tool", "file"],
          ["usr/bin/tool-alias", "symlink"],
          ["usr/bin/tool-hard", "hardlink"],
        ],
      );
      assert.equal(readFileSync(join(dest, "usr/bin/tool"), "utf8"), "binary");
      assert.equal(statSync(join(dest, "usr/bin/tool")).mode & 0o777, 0o755);
      assert.equal(readlinkSync(join(dest, "usr/bin/tool-alias")), "tool");
      assert.equal(
        statSync(join(dest, "usr/bin/tool-hard")).ino,
        statSync(join(dest, "usr/bin/tool")).ino,
      );
      assert.throws(() => lstatSync(join(dest, "usr/share")));
    });
  }

  it("refuses entries escaping the target", async () => {
    const deb = file(
      await makeDeb([
        { name: "./ok", content: "1" },
        { name: "../evil", content: "x" },
      ]),
    );
    await assert.rejects(
      extractDeb(deb, join(dir, "esc1"), () => true),
      (e) => isCorralError(e, "ARCHIVE"),
    );
    assert.throws(() => lstatSync(join(dir, "evil")));
  });

  it("refuses writing through a symlink that points outside", async () => {
    const deb = file(
      await makeDeb([
        { name: "./link", type: "symlink", linkname: dir },
        { name: "./link/planted", content: "x" },
      ]),
    );
    await assert.rejects(
      extractDeb(deb, join(dir, "esc2"), () => true),
      (e) => isCorralError(e, "ARCHIVE"),
    );
    assert.throws(() => lstatSync(join(dir, "planted")));
  });

  it("asks for a hardlink's target to be selected too", async () => {
    const deb = file(await makeDeb(TREE));
    await assert.rejects(
      extractDeb(deb, join(dir, "hl"), (p) => p === "usr/bin/tool-hard"),
      (e) => isCorralError(e, "ARCHIVE") && /select it too/.test(e.message),
    );
  });

  it("fails clearly on a corrupt xz member", async () => {
    const deb = file(
      makeAr([
        ["debian-binary", Buffer.from("2.0\n")],
        ["data.tar.xz", Buffer.from("not xz at all")],
      ]),
    );
    await assert.rejects(
      extractDeb(deb, join(dir, "bad"), () => true),
      (e) => isCorralError(e, "ARCHIVE"),
    );
  });

  it("reads selected files into memory without writing them", async () => {
    const deb = file(await makeDeb(TREE, "xz"));
    const seen: Array<[string, string]> = [];
    await readDebFiles(
      deb,
      (p) => p.endsWith("readme"),
      (p, data) => {
        seen.push([p, data.toString()]);
      },
    );
    assert.deepEqual(seen, [["usr/share/doc/readme", "docs"]]);
  });
});
