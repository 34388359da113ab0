import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { isCorralError } from "../../src/errors.js";
import { extractPvhKernel, findPvhEntry, parseBzImageHeader } from "../../src/images/kernel.js";
import { xz } from "./debian-fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "corral-kernel-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A minimal ELF64 with one PT_NOTE segment holding the given notes. */
function elf(notes: Array<{ name: string; type: number; desc: Buffer }>): Buffer {
  const bodies = notes.map((n) => {
    const name = Buffer.from(`${n.name}\0`);
    const head = Buffer.alloc(12);
    head.writeUInt32LE(name.length, 0);
    head.writeUInt32LE(n.desc.length, 4);
    head.writeUInt32LE(n.type, 8);
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
    return Buffer.concat([head, pad(name), pad(n.desc)]);
  });
  const noteData = Buffer.concat(bodies);
  const h = Buffer.alloc(64 + 56);
  h.writeUInt32BE(0x7f454c46, 0);
  h[4] = 2; // ELFCLASS64
  h[5] = 1; // little-endian
  h.writeBigUInt64LE(64n, 0x20); // e_phoff
  h.writeUInt16LE(56, 0x36); // e_phentsize
  h.writeUInt16LE(1, 0x38); // e_phnum
  h.writeUInt32LE(4, 64); // PT_NOTE
  h.writeBigUInt64LE(BigInt(h.length), 64 + 8); // p_offset
  h.writeBigUInt64LE(BigInt(noteData.length), 64 + 0x20); // p_filesz
  return Buffer.concat([h, noteData, Buffer.alloc(4096, 0x90)]);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/**
 * A bzImage-shaped file: setup header + compressed payload. Kbuild appends the decompressed
 * size to every payload but gzip's (gzip's own trailer holds it).
 */
function bzImage(payload: Buffer, setupSects = 0, sizeWord = true): Buffer {
  const sects = setupSects === 0 ? 4 : setupSects;
  const pm = (sects + 1) * 512;
  const payloadOffset = 0x180;
  const withSize = sizeWord ? Buffer.concat([payload, u32(12345)]) : payload;
  const img = Buffer.alloc(pm + payloadOffset + withSize.length + 64, 0);
  img[0x1f1] = setupSects;
  img.write("HdrS", 0x202, "latin1");
  img.writeUInt16LE(0x020f, 0x206);
  img.writeUInt32LE(payloadOffset, 0x248);
  img.writeUInt32LE(withSize.length, 0x24c);
  withSize.copy(img, pm + payloadOffset);
  return img;
}

const PVH = elf([
  { name: "GNU", type: 3, desc: Buffer.alloc(20, 1) },
  { name: "Xen", type: 18, desc: u32(0x1000abc) },
]);

describe("bzImage setup header", () => {
  it("reads setup_sects (0 means 4) and the payload location", () => {
    const h = parseBzImageHeader(bzImage(Buffer.alloc(10), 0));
    assert.equal(h.setupSects, 4);
    assert.equal(h.protectedModeOffset, 5 * 512);
    assert.equal(h.payloadOffset, 0x180);
    assert.equal(h.payloadLength, 14);
    assert.equal(h.protocol, 0x020f);
    assert.equal(parseBzImageHeader(bzImage(Buffer.alloc(10), 27)).protectedModeOffset, 28 * 512);
  });
  it("rejects files without the HdrS magic or with a payload past the end", () => {
    assert.throws(
      () => parseBzImageHeader(Buffer.alloc(4096)),
      (e) => isCorralError(e, "IMAGE_BUILD"),
    );
    const img = bzImage(Buffer.alloc(10));
    img.writeUInt32LE(1 << 30, 0x24c);
    assert.throws(
      () => parseBzImageHeader(img),
      (e) => isCorralError(e, "IMAGE_BUILD"),
    );
  });
});

describe("PVH note", () => {
  it("finds XEN_ELFNOTE_PHYS32_ENTRY after other notes", () => {
    assert.equal(findPvhEntry(PVH), 0x1000abc);
  });
  it("returns undefined without it, and rejects non-ELF data", () => {
    assert.equal(findPvhEntry(elf([{ name: "GNU", type: 3, desc: Buffer.alloc(4) }])), undefined);
    assert.throws(
      () => findPvhEntry(Buffer.alloc(100)),
      (e) => isCorralError(e, "IMAGE_BUILD"),
    );
  });
});

describe("extractPvhKernel", () => {
  it("decompresses an xz payload despite the trailing size word", async () => {
    const out = join(dir, "vmlinux");
    const k = await extractPvhKernel(bzImage(xz(PVH)), out);
    assert.equal(k.entry, 0x1000abc);
    assert.deepEqual(readFileSync(out), PVH);
  });
  it("handles gzip payloads too", async () => {
    const k = await extractPvhKernel(bzImage(gzipSync(PVH), 0, false), join(dir, "vmlinux-gz"));
    assert.equal(k.size, PVH.length);
  });
  it("fails clearly when the kernel has no PVH entry", async () => {
    const noPvh = elf([{ name: "GNU", type: 3, desc: Buffer.alloc(4) }]);
    await assert.rejects(
      extractPvhKernel(bzImage(xz(noPvh)), join(dir, "nopvh")),
      (e) => isCorralError(e, "IMAGE_BUILD") && /PVH/.test(e.message),
    );
  });
  it("names unsupported compressions", async () => {
    await assert.rejects(
      extractPvhKernel(bzImage(Buffer.from("\x02\x21\x4c\x18 lz4-ish")), join(dir, "lz4")),
      (e) => isCorralError(e, "IMAGE_BUILD") && /compression/.test(e.message),
    );
  });
});
