/**
 * A staged tree -> an ext4 image file: `mke2fs -d` copies the tree (types, modes, owners,
 * mtimes, hardlinks), debugfs applies what staging could not hold, `e2fsck -fn` checks the
 * result, and only then is the file renamed into place.
 */
import { rename, rm, stat } from "node:fs/promises";
import { tempSibling } from "../../base/atomic.js";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError } from "../../errors.js";
import { fixupScript } from "./fixup-script.js";
import { Fixups } from "./fixups.js";
import { BLOCK_SIZE, measureTree } from "./measure.js";
import { e2fsTool, runTool } from "./run-tool.js";
import type { OwnershipMode } from "./tree.js";

const MiB = 1024 * 1024;

export interface Ext4Options {
  /** Volume label, at most 16 bytes. */
  label?: string;
  /** Extra space as a fraction of the content (default 0.2). */
  headroomRatio?: number;
  /** Extra space on top of the ratio (default 64 MiB). */
  headroomBytes?: number;
  /** Smallest image (default 128 MiB). */
  minBytes?: number;
  /** From applyLayers: devices, xattrs, recorded ownership. */
  fixups?: Fixups;
  ownership?: OwnershipMode;
  onProgress?: ProgressListener;
  /** Kills the running tool and removes the temp image (CANCELLED). */
  signal?: AbortSignal;
}

export interface Ext4Result {
  sizeBytes: number;
  contentBytes: number;
  inodes: number;
}

/** mke2fs's default journal size for a filesystem of `blocks` 4 KiB blocks (lib/ext2fs/mkjournal.c). */
function journalBytes(blocks: number): number {
  const limits: [number, number][] = [
    [32768, 1024],
    [256 * 1024, 4096],
    [512 * 1024, 8192],
    [4096 * 1024, 16384],
    [8192 * 1024, 32768],
    [16384 * 1024, 65536],
    [32768 * 1024, 131072],
  ];
  const found = limits.find(([below]) => blocks < below);
  return (found?.[1] ?? 262144) * BLOCK_SIZE;
}

export function imageGeometry(
  contentBytes: number,
  inodes: number,
  options: Pick<Ext4Options, "headroomRatio" | "headroomBytes" | "minBytes"> = {},
): { sizeBytes: number; inodes: number } {
  const ratio = options.headroomRatio ?? 0.2;
  const extra = options.headroomBytes ?? 64 * MiB;
  const round = (n: number) => Math.ceil(n / (4 * MiB)) * 4 * MiB;
  const base = contentBytes * (1 + ratio) + extra;
  // The journal is not headroom anyone can use; room for it comes on top.
  const sizeBytes = Math.max(
    options.minBytes ?? 128 * MiB,
    round(base + journalBytes(base / BLOCK_SIZE)),
  );
  // Images of many small files would run out of inodes at mke2fs's 16 KiB-per-inode default.
  const inodeCount = Math.max(Math.ceil(sizeBytes / 16384), Math.ceil(inodes * (1 + ratio)) + 1024);
  return { sizeBytes, inodes: inodeCount };
}

function buildError(
  step: string,
  out: string,
  result: { code: number | null; stdout: string; stderr: string },
) {
  const output = `${result.stderr}\n${result.stdout}`.trim();
  return new CorralError("IMAGE_BUILD", `${step} failed for ${out} (exit ${result.code})`, {
    details: { output: output.slice(-4000) },
  });
}

export async function buildExt4(
  stagingDir: string,
  outPath: string,
  options: Ext4Options = {},
): Promise<Ext4Result> {
  const label = options.label ?? "rootfs";
  if (Buffer.byteLength(label) > 16) {
    throw new CorralError("INVALID_ARGUMENT", `ext4 label "${label}" is longer than 16 bytes`);
  }
  const onProgress = options.onProgress ?? noProgress;
  const mke2fs = e2fsTool("mke2fs");
  const e2fsck = e2fsTool("e2fsck");
  const tree = await measureTree(stagingDir);
  const geometry = imageGeometry(tree.bytes, tree.inodes, options);
  const script = fixupScript(
    tree.entries,
    options.fixups ?? new Fixups(),
    options.ownership ?? "chown",
  );
  if (script.length > 0) e2fsTool("debugfs");
  const tmp = tempSibling(outPath);
  const total = 3;
  try {
    onProgress({ phase: "ext4", label, current: 0, total });
    const made = await runTool(
      mke2fs,
      [
        "-q",
        "-t",
        "ext4",
        "-b",
        `${BLOCK_SIZE}`,
        "-I",
        "256",
        "-N",
        `${geometry.inodes}`,
        // A sandbox's root fs: the 5% reserved for root would only be wasted headroom.
        "-m",
        "0",
        "-L",
        label,
        "-E",
        "root_owner=0:0",
        "-d",
        stagingDir,
        "-F",
        tmp,
        `${geometry.sizeBytes / 1024}k`,
      ],
      options.signal,
    );
    if (made.code !== 0) throw buildError("mke2fs", outPath, made);
    onProgress({ phase: "ext4", label, current: 1, total });
    await script.run(tmp, options.signal);
    onProgress({ phase: "ext4", label, current: 2, total });
    const checked = await runTool(e2fsck, ["-fn", tmp], options.signal);
    if (checked.code !== 0) throw buildError("e2fsck -fn", outPath, checked);
    await rename(tmp, outPath);
    onProgress({ phase: "ext4", label, current: total, total, done: true });
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { sizeBytes: (await stat(outPath)).size, contentBytes: tree.bytes, inodes: tree.inodes };
}
