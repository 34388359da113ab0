/**
 * Snapshots on disk: `snapshots/<name>/` holds snapshot.json (what was saved, from which VM,
 * with which backend, VMM and image, checksums), the files the backend wrote (QEMU: memory.bin,
 * its migration stream) and frozen copies of the VM's own disks. Nothing in it points into the source VM's directory, so removing the
 * VM keeps its snapshots restorable, and several VMs can restore from one at once.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { z } from "zod";
import { writeFileAtomicSync } from "../base/atomic.js";
import { sha256File } from "../base/hash.js";
import { CorralError } from "../errors.js";
import { snapshotPaths, snapshotsRoot } from "../paths/layout.js";
import { BACKENDS, NAME_PATTERN } from "../spec/schema.js";
import { recordSchema } from "./record.js";

/**
 * Bump when what a snapshot holds, or the VMM arguments it must be restored with, change.
 * 2: the backend's files as a list (1 had QEMU's memory.bin as `memory`; still read).
 */
export const SNAPSHOT_FORMAT = 2;

const fileSchema = z.object({
  file: z.string().regex(/^[a-z0-9.-]+$/),
  sha256: z.string(),
  size: z.number(),
});

const metaSchema = z.object({
  format: z.literal(SNAPSHOT_FORMAT),
  name: z.string().regex(NAME_PATTERN),
  createdAt: z.string(),
  source: z.object({ name: z.string(), id: z.string() }),
  backend: z.enum(BACKENDS),
  /** The VMM's `--version` line: the saved state's format follows it. */
  vmmVersion: z.string(),
  /** The source's record: spec, boot image, image config. */
  record: recordSchema,
  /** What the backend wrote (memory, device state, its config), restored by the same backend. */
  state: z.array(fileSchema.extend({ role: z.enum(["memory", "state", "config"]) })).min(1),
  /** Frozen disks, in the source's order: the root overlay first, then owned data disks. */
  rootDisk: fileSchema.optional(),
  disks: z.array(
    z.union([
      fileSchema.extend({ owned: z.literal(true) }),
      z.object({ owned: z.literal(false), path: z.string(), format: z.enum(["raw", "qcow2"]) }),
    ]),
  ),
  /** How long the source was frozen, for `snapshot ls`. */
  pausedMs: z.number(),
});
export type SnapshotMeta = z.output<typeof metaSchema>;

/** Format 1 (QEMU only, one memory.bin) in today's shape. */
function upgradeFormat1(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null || (raw as { format?: unknown }).format !== 1) {
    return raw;
  }
  const { memory, ...rest } = raw as { memory?: object };
  return {
    ...rest,
    format: SNAPSHOT_FORMAT,
    backend: "qemu",
    state: memory === undefined ? [] : [{ ...memory, role: "memory" }],
  };
}

/** How many bytes of backend state (memory and devices) a snapshot holds. */
export function stateBytes(meta: SnapshotMeta): number {
  return meta.state.reduce((sum, f) => sum + f.size, 0);
}

export function checkSnapshotName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new CorralError("INVALID_ARGUMENT", `snapshot name "${name}" is not valid`, {
      hint: "use lowercase letters, digits, '.', '_' or '-' (e.g. base-1)",
    });
  }
}

export function writeSnapshotMeta(dir: string, meta: SnapshotMeta): void {
  writeFileAtomicSync(`${dir}/snapshot.json`, `${JSON.stringify(meta, null, 2)}\n`, 0o600);
}

export function readSnapshotMeta(name: string): SnapshotMeta {
  checkSnapshotName(name);
  const paths = snapshotPaths(name);
  let raw: string;
  try {
    raw = readFileSync(paths.meta, "utf8");
  } catch {
    throw new CorralError("SNAPSHOT_NOT_FOUND", `no snapshot named "${name}"`, {
      hint: 'list snapshots with "corral snapshot ls"',
    });
  }
  let parsed: ReturnType<typeof metaSchema.safeParse>;
  try {
    parsed = metaSchema.safeParse(upgradeFormat1(JSON.parse(raw)));
  } catch {
    parsed = metaSchema.safeParse(undefined);
  }
  if (!parsed.success) {
    throw new CorralError(
      "SNAPSHOT_DAMAGED",
      `snapshot "${name}" is damaged: snapshot.json is unreadable`,
      {
        hint: `remove it with "corral snapshot rm ${name}" and take a new one`,
      },
    );
  }
  return parsed.data;
}

export function listSnapshots(): SnapshotMeta[] {
  let names: string[];
  try {
    names = readdirSync(snapshotsRoot()).filter((n) => NAME_PATTERN.test(n));
  } catch {
    return [];
  }
  const out: SnapshotMeta[] = [];
  for (const name of names.sort()) {
    try {
      out.push(readSnapshotMeta(name));
    } catch {
      // a damaged snapshot is listed by name only through `snapshot rm`
    }
  }
  return out;
}

export function removeSnapshot(name: string): void {
  checkSnapshotName(name);
  const { dir } = snapshotPaths(name);
  if (!existsSync(dir)) {
    throw new CorralError("SNAPSHOT_NOT_FOUND", `no snapshot named "${name}"`, {
      hint: 'list snapshots with "corral snapshot ls"',
    });
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Every file is checked against the size recorded when it was written, so a truncated
 * snapshot is refused before any VM exists; with `full`, against its SHA-256 too (restores
 * hash the memory stream while they feed it to the VMM instead: hashing first would double
 * the fast path's cost).
 */
export async function verifySnapshotFiles(
  meta: SnapshotMeta,
  options: { full: boolean },
): Promise<void> {
  const paths = snapshotPaths(meta.name);
  const files = [
    ...meta.state,
    ...(meta.rootDisk === undefined ? [] : [meta.rootDisk]),
    ...meta.disks.flatMap((d) => (d.owned ? [d] : [])),
  ];
  for (const f of files) {
    const path = paths.file(f.file);
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw damaged(meta.name, `${f.file} is missing`);
    }
    if (size !== f.size) {
      throw damaged(meta.name, `${f.file} is ${size} bytes, ${f.size} were written (truncated?)`);
    }
    if (options.full && (await sha256File(path)) !== f.sha256) {
      throw damaged(meta.name, `${f.file} does not match its SHA-256 (altered or corrupt)`);
    }
  }
  for (const d of meta.disks) {
    if (!d.owned && !existsSync(d.path)) {
      throw new CorralError(
        "SNAPSHOT_DAMAGED",
        `snapshot "${meta.name}" attaches ${d.path}, which is gone`,
        {
          hint: "put the disk back at that path, or take a new snapshot",
        },
      );
    }
  }
}

export function damaged(name: string, what: string): CorralError {
  return new CorralError("SNAPSHOT_DAMAGED", `snapshot "${name}" is damaged: ${what}`, {
    hint: `remove it with "corral snapshot rm ${name}" and take a new one`,
  });
}
