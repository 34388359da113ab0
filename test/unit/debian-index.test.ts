import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { parseDeb822 } from "../../src/images/debian/deb822.js";
import { aptMirrorCandidates, debianMirror } from "../../src/images/debian/mirror.js";
import { PackageIndex, parsePackages, parseRelations } from "../../src/images/debian/packages.js";
import { parseRelease, stripClearsign } from "../../src/images/debian/release.js";
import { compareDebianVersions, upstreamVersion } from "../../src/images/debian/version.js";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);

const RELEASE = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Origin: Debian
Suite: stable
Codename: bookworm
Date: Sat, 10 May 2025 09:00:00 UTC
MD5Sum:
 0123 10 main/binary-amd64/Packages.gz
SHA256:
 ${HASH_A} 1234 main/binary-amd64/Packages.gz
 ${HASH_B}  99 main/binary-amd64/Packages.xz
- -dash escaped line
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEE
-----END PGP SIGNATURE-----
`;

describe("Release", () => {
  it("strips the clearsign armor and undoes dash-escaping", () => {
    const body = stripClearsign(RELEASE);
    assert.ok(body.startsWith("Origin: Debian\n"));
    assert.ok(body.includes("\n-dash escaped line\n"));
    assert.ok(!body.includes("PGP"));
  });
  it("parses the SHA256 section only", () => {
    const r = parseRelease(RELEASE);
    assert.equal(r.codename, "bookworm");
    assert.equal(r.suite, "stable");
    assert.deepEqual(r.files.get("main/binary-amd64/Packages.gz"), { sha256: HASH_A, size: 1234 });
    assert.deepEqual(r.files.get("main/binary-amd64/Packages.xz"), { sha256: HASH_B, size: 99 });
    assert.equal(r.files.size, 2);
  });
  it("refuses a Release without SHA256 sums", () => {
    assert.throws(
      () => parseRelease("Suite: x\nMD5Sum:\n 00 1 a\n"),
      (e) => isCorralError(e, "DOWNLOAD"),
    );
  });
});

const PACKAGES = `Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
Filename: pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.176-1_amd64.deb
Size: 1500
SHA256: ${HASH_A}

Package: linux-image-6.1.0-50-amd64
Version: 6.1.176-1
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb
Size: 70305560
SHA256: ${HASH_B}
Description: Linux 6.1 for 64-bit PCs (signed)
 The Linux kernel 6.1 and modules for use on PCs with AMD64, Intel 64 or
 .
 VIA Nano processors.

Package: busybox-static
Version: 1:1.35.0-4+b3
Provides: busybox
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+b3_amd64.deb
Size: 900
SHA256: ${HASH_A}

Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Provides: busybox
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
Size: 928188
SHA256: ${HASH_B}

Package: broken-no-sha
Version: 1
Filename: pool/x.deb
Size: 1
`;

describe("Packages", () => {
  const index = new PackageIndex("bookworm", parsePackages(PACKAGES));

  it("parses stanzas with continuation lines, skipping incomplete ones", () => {
    const stanzas = parseDeb822(PACKAGES);
    assert.equal(stanzas.length, 5);
    assert.match(stanzas[1]?.get("description") ?? "", /\n\nVIA Nano/);
    assert.equal(index.packages.length, 4);
  });
  it("parses relations", () => {
    assert.deepEqual(parseRelations("kmod, a (>= 4.3~) | b:any, c [amd64]"), [
      ["kmod"],
      ["a", "b"],
      ["c"],
    ]);
  });
  it("picks the highest version", () => {
    assert.equal(index.get("busybox-static")?.version, "1:1.35.0-4+deb12u1+b1");
  });
  it("follows a metapackage to the concrete kernel package", () => {
    const pkg = index.resolve("linux-image-amd64", /^linux-image-\d/);
    assert.equal(pkg.name, "linux-image-6.1.0-50-amd64");
    assert.equal(pkg.size, 70305560);
    assert.equal(index.resolve("linux-image-amd64").name, "linux-image-amd64");
  });
  it("resolves a virtual package through its sole provider", () => {
    assert.equal(index.resolve("busybox").name, "busybox-static");
  });
  it("names the package and suite when it is missing", () => {
    assert.throws(
      () => index.resolve("nope"),
      (e) =>
        isCorralError(e, "IMAGE_NOT_FOUND") && /nope/.test(e.message) && /bookworm/.test(e.message),
    );
  });
});

describe("Debian versions", () => {
  it("orders like dpkg", () => {
    const cases: Array<[string, string, number]> = [
      ["1.0", "1.0", 0],
      ["1.0~rc1", "1.0", -1],
      ["1:0.1", "2.0", 1],
      ["1.35.0-4+b3", "1.35.0-4+deb12u1+b1", -1],
      ["6.1.176-1", "6.1.99-1", 1],
      ["1.0a", "1.0", 1],
      ["1.0-1", "1.0-1~bpo1", 1],
    ];
    for (const [a, b, sign] of cases) {
      assert.equal(Math.sign(compareDebianVersions(a, b)), sign, `${a} vs ${b}`);
    }
  });
  it("extracts the upstream version", () => {
    assert.equal(upstreamVersion("1:1.35.0-4+deb12u1+b1"), "1.35.0");
    assert.equal(upstreamVersion("0.3.0-2"), "0.3.0");
  });
});

describe("mirror", () => {
  const dir = mkdtempSync(join(tmpdir(), "corral-apt-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const saved = process.env.CORRAL_DEBIAN_MIRROR;
  after(() => {
    if (saved === undefined) delete process.env.CORRAL_DEBIAN_MIRROR;
    else process.env.CORRAL_DEBIAN_MIRROR = saved;
  });

  it("reads deb822 .sources, skipping security and deb-src", () => {
    const d = join(dir, "d1");
    const list = join(dir, "missing.list");
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, "debian.sources"),
      [
        "Types: deb-src",
        "URIs: http://src.example/debian",
        "Suites: bookworm",
        "",
        "Types: deb",
        "URIs: http://security.example/debian-security",
        "Suites: bookworm-security",
        "",
        "Types: deb",
        "# a comment",
        "URIs: http://mirror.example/debian/",
        "Suites: bookworm bookworm-updates",
        "Components: main",
      ].join("\n"),
    );
    assert.deepEqual(aptMirrorCandidates(d, list), ["http://mirror.example/debian/"]);
  });
  it("reads one-line sources.list entries with options", () => {
    const list = join(dir, "sources.list");
    writeFileSync(
      list,
      "# deb http://commented.example/debian bookworm main\n" +
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n" +
        "deb http://one.example/debian-security bookworm-security main\n",
    );
    assert.deepEqual(aptMirrorCandidates(join(dir, "none"), list), ["http://one.example/debian"]);
  });
  it("fails with a SETUP error naming CORRAL_DEBIAN_MIRROR when nothing is configured", () => {
    delete process.env.CORRAL_DEBIAN_MIRROR;
    assert.throws(
      () => debianMirror(join(dir, "none"), join(dir, "none.list")),
      (e) => isCorralError(e, "SETUP") && /CORRAL_DEBIAN_MIRROR/.test(e.hint ?? ""),
    );
  });
  it("prefers CORRAL_DEBIAN_MIRROR and trims trailing slashes", () => {
    process.env.CORRAL_DEBIAN_MIRROR = "http://override.example/debian/";
    assert.equal(debianMirror(), "http://override.example/debian");
  });
});
