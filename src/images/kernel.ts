/**
 * Turns Debian's bzImage into a PVH-bootable vmlinux. QEMU can boot an ELF kernel with a
 * XEN_ELFNOTE_PHYS32_ENTRY note directly (no real-mode setup, no in-guest decompression):
 * the generic kernel's xz payload otherwise costs ~3 s of TCG time on every boot.
 */
import { readFile, writeFile } from "node:fs/promises";
import { CorralError } from "../errors.js";
import { type Compression, decompressBuffer } from "./debian/decompress.js";

export interface BzImageHeader {
  setupSects: number;
  /** Boot protocol version, e.g. 0x020f. */
  protocol: number;
  /** Start of the protected-mode code in the file: (setup_sects + 1) * 512. */
  protectedModeOffset: number;
  /** Compressed payload, relative to protectedModeOffset. */
  payloadOffset: number;
  payloadLength: number;
}

/** Reads the x86 boot protocol setup header (Documentation/arch/x86/boot.rst). */
export function parseBzImageHeader(image: Uint8Array): BzImageHeader {
  const buf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  if (buf.length < 0x250 || buf.toString("latin1", 0x202, 0x206) !== "HdrS") {
    throw new CorralError("IMAGE_BUILD", "not a bzImage: no HdrS setup header at 0x202");
  }
  const protocol = buf.readUInt16LE(0x206);
  if (protocol < 0x0208) {
    throw new CorralError(
      "IMAGE_BUILD",
      `bzImage boot protocol ${protocol.toString(16)} predates payload_offset (2.08)`,
    );
  }
  const raw = buf.readUInt8(0x1f1);
  const setupSects = raw === 0 ? 4 : raw;
  const protectedModeOffset = (setupSects + 1) * 512;
  const payloadOffset = buf.readUInt32LE(0x248);
  const payloadLength = buf.readUInt32LE(0x24c);
  if (payloadLength === 0 || protectedModeOffset + payloadOffset + payloadLength > buf.length) {
    throw new CorralError("IMAGE_BUILD", "bzImage payload lies outside the file");
  }
  return { setupSects, protocol, protectedModeOffset, payloadOffset, payloadLength };
}

export function payloadCompression(payload: Uint8Array): Compression {
  const b = Buffer.from(payload.buffer, payload.byteOffset, Math.min(6, payload.byteLength));
  if (b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  if (b[0] === 0x1f && b[1] === 0x8b) return "gz";
  if (b.readUInt32LE(0) === 0xfd2fb528) return "zst";
  throw new CorralError(
    "IMAGE_BUILD",
    `unsupported bzImage payload compression (magic ${b.toString("hex")}); xz, gzip and zstd work`,
  );
}

const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** The PVH entry point of an ELF64 kernel, or undefined when it has no PVH note. */
export function findPvhEntry(elf: Uint8Array): number | undefined {
  const buf = Buffer.from(elf.buffer, elf.byteOffset, elf.byteLength);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) {
    throw new CorralError("IMAGE_BUILD", "the decompressed kernel is not an ELF file");
  }
  if (buf[4] !== 2 || buf[5] !== 1) {
    throw new CorralError("IMAGE_BUILD", "the decompressed kernel is not ELF64 little-endian");
  }
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (buf.readUInt32LE(ph) !== PT_NOTE) continue;
    const offset = Number(buf.readBigUInt64LE(ph + 0x08));
    const end = offset + Number(buf.readBigUInt64LE(ph + 0x20));
    let at = offset;
    while (at + 12 <= end) {
      const namesz = buf.readUInt32LE(at);
      const descsz = buf.readUInt32LE(at + 4);
      const type = buf.readUInt32LE(at + 8);
      const nameAt = at + 12;
      const descAt = nameAt + Math.ceil(namesz / 4) * 4;
      const name = buf.toString("latin1", nameAt, nameAt + namesz).replace(/\0+$/, "");
      if (name === "Xen" && type === XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4) {
        return descsz >= 8 ? Number(buf.readBigUInt64LE(descAt)) : buf.readUInt32LE(descAt);
      }
      at = descAt + Math.ceil(descsz / 4) * 4;
    }
  }
  return undefined;
}

export interface PvhKernel {
  path: string;
  size: number;
  entry: number;
}

/** Extracts the ELF payload of a bzImage (path or contents) to `outPath`, checking it boots via PVH. */
export async function extractPvhKernel(
  bzImage: string | Uint8Array,
  outPath: string,
): Promise<PvhKernel> {
  const image = typeof bzImage === "string" ? await readFile(bzImage) : bzImage;
  const source = typeof bzImage === "string" ? bzImage : "the bzImage";
  const h = parseBzImageHeader(image);
  const start = h.protectedModeOffset + h.payloadOffset;
  const payload = image.subarray(start, start + h.payloadLength);
  const kind = payloadCompression(payload);
  // The payload ends with the decompressed size (4 bytes) after the stream: ignore it.
  const elf = await decompressBuffer(kind, payload, kind === "xz" ? ["--single-stream"] : []);
  const entry = findPvhEntry(elf);
  if (entry === undefined) {
    throw new CorralError(
      "IMAGE_BUILD",
      `${source} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)`,
      {
        hint: "the kernel must be built with CONFIG_PVH=y to boot as an ELF under QEMU",
      },
    );
  }
  await writeFile(outPath, elf, { mode: 0o644 });
  return { path: outPath, size: elf.length, entry };
}
