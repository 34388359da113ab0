import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { buildIso, type IsoFile } from "../../src/protocols/iso9660/index.js";

const dir = mkdtempSync(join(tmpdir(), "corral-iso-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const big = Buffer.alloc(1024 * 1024 + 4097);
for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
const longName = `${"l".repeat(60)}.txt`;

const seedFiles: IsoFile[] = [
  { name: "user-data", data: Buffer.from("#cloud-config\nhostname: h\n") },
  { name: "meta-data", data: Buffer.from("instance-id: i-1\nlocal-hostname: h\n") },
  { name: "network-config", data: Buffer.from("version: 2\n"), mode: 0o600 },
  { name: "empty", data: Buffer.alloc(0) },
  { name: "sector", data: Buffer.alloc(2048, 0x5a) },
  { name: "scripts/run.sh", data: Buffer.from("#!/bin/sh\necho hi\n"), mode: 0o755 },
  { name: "scripts/big.bin", data: big },
  { name: `scripts/${longName}`, data: Buffer.from("long") },
  // These two map to the same 8.3 identifier (USER_DAT).
  { name: "user-data2", data: Buffer.from("second") },
];

function write(name: string, iso: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, iso);
  return path;
}

const seedIso = write("seed.iso", buildIso({ volumeId: "cidata", files: seedFiles }));

function run(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: "utf8" });
  assert.equal(r.status, 0, `${tool} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function runBytes(tool: string, args: string[]): Buffer {
  const r = spawnSync(tool, args, { maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `${tool} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function listing(out: string): Map<string, string> {
  // "-rw-r--r--   1    0    0   14 Jan  1 2000 [     30 00]  user-data "
  const names = new Map<string, string>();
  for (const line of out.split("\n")) {
    const m = /^([-d][-rwxsStT]{9})\s.*\]\s\s(.*?)\s*$/.exec(line);
    if (m && m[2] !== "." && m[2] !== "..") names.set(m[2]!, m[1]!);
  }
  return names;
}

describe("buildIso layout", () => {
  it("is whole sectors with a primary, a Joliet and a terminator descriptor", () => {
    const iso = readFileSync(seedIso);
    assert.equal(iso.length % 2048, 0);
    assert.equal(
      iso.subarray(0, 16 * 2048).every((b) => b === 0),
      true,
    );
    assert.deepEqual([iso[16 * 2048], iso[17 * 2048], iso[18 * 2048]], [1, 2, 255]);
    for (const s of [16, 17, 18]) {
      assert.equal(iso.toString("latin1", s * 2048 + 1, s * 2048 + 6), "CD001");
    }
    assert.equal(iso.readUInt32LE(16 * 2048 + 80), iso.length / 2048);
    assert.equal(iso.readUInt32BE(16 * 2048 + 84), iso.length / 2048);
    assert.equal(iso.toString("latin1", 16 * 2048 + 40, 16 * 2048 + 72).trimEnd(), "cidata");
    assert.equal(iso.toString("latin1", 17 * 2048 + 88, 17 * 2048 + 91), "%/E");
  });

  it("is deterministic and independent of the input order", () => {
    const a = buildIso({ volumeId: "cidata", files: seedFiles });
    const b = buildIso({ volumeId: "cidata", files: [...seedFiles].reverse() });
    assert.equal(a.equals(readFileSync(seedIso)), true);
    assert.equal(a.equals(b), true);
    const later = buildIso({
      volumeId: "cidata",
      files: seedFiles,
      createdAt: new Date("2024-05-06T07:08:09Z"),
    });
    assert.equal(later.equals(a), false);
    assert.equal(later.length, a.length);
  });
});

describe("buildIso read by real tools", () => {
  it("isoinfo -d: the volume id, Joliet and Rock Ridge", () => {
    const out = run("isoinfo", ["-d", "-i", seedIso]);
    assert.match(out, /^Volume id: cidata$/m);
    assert.match(out, /Joliet with UCS level 3 found/);
    assert.match(out, /Rock Ridge signatures version 1 found/);
    assert.match(out, /^Logical block size is: 2048$/m);
  });

  it("isoinfo -l -R: real names and modes", () => {
    const names = listing(run("isoinfo", ["-l", "-R", "-i", seedIso]));
    assert.equal(names.get("user-data"), "-rw-r--r--");
    assert.equal(names.get("meta-data"), "-rw-r--r--");
    assert.equal(names.get("network-config"), "-rw-------");
    assert.equal(names.get("user-data2"), "-rw-r--r--");
    assert.equal(names.get("scripts"), "drwxr-xr-x");
    assert.equal(names.get("run.sh"), "-rwxr-xr-x");
    assert.equal(names.get(longName), "-rw-r--r--");
  });

  it("isoinfo -l -J: Joliet names", () => {
    const names = listing(run("isoinfo", ["-l", "-J", "-i", seedIso]));
    for (const n of ["user-data", "meta-data", "network-config", "scripts", "big.bin", longName]) {
      assert.ok(names.has(n), `${n} missing from Joliet`);
    }
  });

  it("isoinfo -l: unique ISO 9660 level 1 identifiers", () => {
    const names = [...listing(run("isoinfo", ["-l", "-i", seedIso])).keys()];
    assert.ok(names.includes("USER_DAT.;1"));
    assert.ok(names.includes("USER_DA1.;1"));
    assert.ok(names.includes("SCRIPTS"));
    for (const n of names) assert.match(n, /^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{0,3};1)?$/);
  });

  it("isoinfo -x: contents through Rock Ridge, Joliet and plain ISO names", () => {
    for (const f of seedFiles) {
      const got = runBytes("isoinfo", ["-R", "-x", `/${f.name}`, "-i", seedIso]);
      assert.equal(Buffer.compare(got, f.data), 0, `-R ${f.name}`);
      const joliet = runBytes("isoinfo", ["-J", "-x", `/${f.name}`, "-i", seedIso]);
      assert.equal(Buffer.compare(joliet, f.data), 0, `-J ${f.name}`);
    }
    const plain = runBytes("isoinfo", ["-x", "/SCRIPTS/BIG.BIN;1", "-i", seedIso]);
    assert.equal(plain.equals(big), true);
  });

  it("osirrox extracts the same tree (names, contents, modes)", () => {
    const out = join(dir, "extracted");
    run("osirrox", ["-indev", seedIso, "-extract", "/", out]);
    const tree = new Map<string, { mode: number; data?: Buffer }>();
    const walk = (rel: string) => {
      for (const name of readdirSync(join(out, rel))) {
        const path = rel === "" ? name : `${rel}/${name}`;
        const st = statSync(join(out, path));
        if (st.isDirectory()) {
          tree.set(path, { mode: st.mode & 0o7777 });
          walk(path);
        } else tree.set(path, { mode: st.mode & 0o7777, data: readFileSync(join(out, path)) });
      }
    };
    walk("");
    const expected = new Map(seedFiles.map((f) => [f.name, f]));
    assert.deepEqual([...tree.keys()].sort(), [...expected.keys(), "scripts"].sort());
    assert.equal(tree.get("scripts")?.mode, 0o755);
    for (const [name, f] of expected) {
      assert.equal(tree.get(name)?.mode, f.mode ?? 0o644, name);
      assert.equal(tree.get(name)?.data?.equals(f.data), true, name);
    }
  });

  it("xorriso -find lists Rock Ridge names, sizes and modes", () => {
    const out = run("xorriso", ["-indev", seedIso, "-find", "/", "-exec", "lsdl"]);
    assert.match(out, /^-rw-r--r-- +1 0 +0 +\d+ .* '\/user-data'$/m);
    assert.match(out, /^-rw------- +1 0 +0 +11 .* '\/network-config'$/m);
    assert.match(out, /^-rw-r--r-- +1 0 +0 +0 .* '\/empty'$/m);
    assert.match(out, /^-rw-r--r-- +1 0 +0 +2048 .* '\/sector'$/m);
    assert.match(out, new RegExp(`^-rw-r--r-- +1 0 +0 +${big.length} .* '/scripts/big.bin'$`, "m"));
  });

  it("blkid: TYPE=iso9660 LABEL=cidata, as for genisoimage", () => {
    const out = run("blkid", ["-p", "-o", "export", seedIso]);
    assert.match(out, /^TYPE=iso9660$/m);
    assert.match(out, /^LABEL=cidata$/m);
    // The UUID blkid shows is the volume's modification time.
    assert.match(out, /^UUID=2000-01-01-00-00-00-00$/m);
  });

  it("blkid labels match genisoimage's for the same volume id", () => {
    const src = join(dir, "gen-src");
    const ours = write("ours.iso", buildIso({ volumeId: "cidata", files: seedFiles.slice(0, 3) }));
    spawnSync("mkdir", ["-p", src]);
    for (const f of seedFiles.slice(0, 3)) writeFileSync(join(src, f.name), f.data);
    const theirs = join(dir, "theirs.iso");
    run("genisoimage", ["-quiet", "-o", theirs, "-volid", "cidata", "-joliet", "-rock", src]);
    const field = (out: string, key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(out)?.[1];
    const a = run("blkid", ["-p", "-o", "export", ours]);
    const b = run("blkid", ["-p", "-o", "export", theirs]);
    assert.equal(field(a, "LABEL"), field(b, "LABEL"));
    assert.equal(field(a, "TYPE"), field(b, "TYPE"));
  });

  it("blkid reads a 32-character label whole (Joliet holds only 16)", () => {
    const label = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_01234";
    const path = write("long-label.iso", buildIso({ volumeId: label, files: [] }));
    assert.match(run("blkid", ["-p", "-o", "export", path]), new RegExp(`^LABEL=${label}$`, "m"));
  });

  it("file: an ISO 9660 CD-ROM filesystem named cidata", () => {
    assert.match(run("file", ["-b", seedIso]), /^ISO 9660 CD-ROM filesystem data 'cidata'/);
  });

  it("Rock Ridge entries too long for a record go to a continuation area", () => {
    // 64 three-byte characters: NM alone is 197 bytes, more than a record has left.
    const name = "€".repeat(64);
    const files = [
      { name, data: Buffer.from("euro"), mode: 0o640 },
      { name: `d/${name}`, data: Buffer.from("deep"), mode: 0o640 },
    ];
    const path = write("ce.iso", buildIso({ volumeId: "cidata", files }));
    assert.equal(listing(run("isoinfo", ["-l", "-R", "-i", path])).get(name), "-rw-r-----");
    assert.equal(runBytes("isoinfo", ["-R", "-x", `/${name}`, "-i", path]).toString(), "euro");
    assert.equal(runBytes("isoinfo", ["-R", "-x", `/d/${name}`, "-i", path]).toString(), "deep");
    const out = join(dir, "ce-extracted");
    run("osirrox", ["-indev", path, "-extract", "/", out]);
    assert.equal(readFileSync(join(out, name), "utf8"), "euro");
    assert.equal(statSync(join(out, name)).mode & 0o7777, 0o640);
    assert.equal(readFileSync(join(out, "d", name), "utf8"), "deep");
  });

  it("an image without files is still readable", () => {
    const path = write("empty.iso", buildIso({ volumeId: "EMPTY", files: [] }));
    assert.match(run("isoinfo", ["-d", "-i", path]), /^Volume id: EMPTY$/m);
    assert.equal(listing(run("isoinfo", ["-l", "-R", "-i", path])).size, 0);
  });
});

describe("buildIso input validation", () => {
  const file = (name: string): IsoFile => ({ name, data: Buffer.from("x") });
  const refuses = (files: IsoFile[], pattern: RegExp, volumeId = "cidata") =>
    assert.throws(
      () => buildIso({ volumeId, files }),
      (e) => isCorralError(e, "ISO") && pattern.test(e.message),
    );

  it("refuses bad names, naming the file", () => {
    refuses([file("ok"), file("")], /^files\[1\]\.name: empty name/);
    refuses([file("/abs")], /^files\[0\]\.name: empty name/);
    refuses([file("dir/")], /^files\[0\]\.name: empty name/);
    refuses([file("a/b/c")], /^files\[0\]\.name: .*one directory level/);
    refuses([file("a\0b")], /^files\[0\]\.name: names cannot contain NUL/);
    refuses([file("a\nb")], /control characters/);
    refuses([file(".")], /is not a name/);
    refuses([file("../x")], /is not a name/);
    refuses([file("a:b")], /not allowed by Joliet/);
    refuses([file("a;1")], /not allowed by Joliet/);
    refuses([file("a\\b")], /not allowed by Joliet/);
    refuses([file("x".repeat(65))], /longer than 64 characters/);
    refuses([file("emoji-\u{1f600}")], /outside Unicode's BMP/);
  });

  it("accepts names of exactly 64 characters", () => {
    assert.ok(buildIso({ volumeId: "cidata", files: [file("y".repeat(64))] }).length > 0);
  });

  it("refuses duplicates and a name that is both a file and a directory", () => {
    refuses([file("a"), file("a")], /^files\[1\]\.name: "a" is given twice/);
    refuses([file("d/x"), file("d")], /^files\[1\]\.name: "d" is a directory/);
    refuses([file("d"), file("d/x")], /^files\[1\]\.name: "d" is already a file/);
  });

  it("refuses bad volume ids", () => {
    refuses([], /^volumeId:/, "");
    refuses([], /^volumeId:/, "ci data");
    refuses([], /^volumeId:/, "ci-data");
    refuses([], /^volumeId:/, "x".repeat(33));
    assert.ok(buildIso({ volumeId: "CIDATA", files: [] }).length > 0);
  });

  it("refuses bad modes, data and dates", () => {
    refuses([{ name: "a", data: Buffer.from(""), mode: 0o10000 }], /^files\[0\]\.mode:/);
    refuses([{ name: "a", data: Buffer.from(""), mode: 1.5 }], /^files\[0\]\.mode:/);
    refuses([{ name: "a", data: "text" as unknown as Buffer }], /^files\[0\]\.data:/);
    assert.throws(
      () => buildIso({ volumeId: "cidata", files: [], createdAt: new Date("x") }),
      (e) => isCorralError(e, "ISO") && /^createdAt:/.test(e.message),
    );
    assert.throws(
      () => buildIso({ volumeId: "cidata", files: [], createdAt: new Date("1850-01-01") }),
      (e) => isCorralError(e, "ISO") && /^createdAt:.*1900/.test(e.message),
    );
  });
});
