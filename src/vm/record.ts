/** The persisted record of one VM (vm.json), and its atomic read/write. */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { writeFileAtomicSync } from "../base/atomic.js";
import { CorralError } from "../errors.js";
import { specSchema } from "../spec/schema.js";

export const VM_STATES = [
  "creating",
  "starting",
  "running",
  "ready",
  "paused",
  "stopping",
  "stopped",
  "failed",
] as const;
export type VmState = (typeof VM_STATES)[number];

/** States in which a VMM process should exist. */
export const ACTIVE_STATES: readonly VmState[] = [
  "starting",
  "running",
  "ready",
  "paused",
  "stopping",
];

export const recordSchema = z.object({
  version: z.literal(1),
  id: z.string().regex(/^[0-9a-f]{12}$/),
  name: z.string(),
  spec: specSchema,
  state: z.enum(VM_STATES),
  reason: z.string().optional(),
  image: z.object({
    name: z.string(),
    version: z.string(),
    digest: z.string(),
    kernel: z.string(),
    initrd: z.string(),
    cmdline: z.string(),
  }),
  accel: z.object({ accel: z.enum(["kvm", "hvf", "tcg"]), reason: z.string() }).optional(),
  /** Set when the VM runs an OCI image: its ext4 behind this VM's qcow2 overlay. */
  rootDisk: z
    .object({
      reference: z.string(),
      manifestDigest: z.string(),
      base: z.string(),
      overlay: z.string(),
      /** The overlay's format (absent in records of older versions: qcow2). */
      overlayFormat: z.enum(["raw", "qcow2"]).optional(),
    })
    .optional(),
  /** Set when the VM boots a cloud image: the user's file behind this VM's own overlay. */
  cloudDisk: z
    .object({
      base: z.string(),
      baseFormat: z.enum(["raw", "qcow2"]),
      overlay: z.string(),
      overlayFormat: z.enum(["raw", "qcow2"]).optional(),
    })
    .optional(),
  /** Data disks, attached after the root disk; `owned` ones live in the instance directory. */
  disks: z
    .array(
      z.object({
        path: z.string(),
        format: z.enum(["raw", "qcow2"]),
        readOnly: z.boolean(),
        owned: z.boolean(),
      }),
    )
    .default([]),
  imageConfig: z
    .object({
      env: z.array(z.string()),
      workingDir: z.string().optional(),
      user: z.string().optional(),
      entrypoint: z.array(z.string()).optional(),
      cmd: z.array(z.string()).optional(),
    })
    .optional(),
  /** Written by versions before 0.2 (QEMU's vsock CID, now the driver's); ignored. */
  guestCid: z.number().int().optional(),
  /** The snapshot this VM was restored from: its disks back onto that snapshot's files. */
  restoredFrom: z.string().optional(),
  /** A member of a warm pool (daemon/pools.ts); `taken` once handed out. */
  pool: z.object({ name: z.string(), taken: z.boolean() }).optional(),
  /** The address corral gave the guest (on a switch, when the spec has no --ip). */
  guestIp: z.string().optional(),
  /** What the user last asked for; a VMM exit while "stopped" is desired is not a failure. */
  desired: z.enum(["running", "stopped"]),
  createdAt: z.string(),
  startedAt: z.string().optional(),
  readyAt: z.string().optional(),
  stoppedAt: z.string().optional(),
});

export type VmRecord = z.output<typeof recordSchema>;

export function readRecord(path: string, name: string): VmRecord {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CorralError("VM_NOT_FOUND", `no VM named "${name}"`, {
        hint: 'list VMs with "corral ls"',
      });
    }
    throw err;
  }
  // The spec was validated when written; re-parsing the output form keeps defaults stable.
  const parsed = recordSchema.safeParse(JSON.parse(raw));
  if (!parsed.success) {
    throw new CorralError("INTERNAL", `the record of VM "${name}" is unreadable (${path})`, {
      hint: `remove it with "corral rm -f ${name}"`,
      cause: parsed.error,
    });
  }
  return parsed.data;
}

export function writeRecord(path: string, record: VmRecord): void {
  writeFileAtomicSync(path, `${JSON.stringify(record, null, 2)}\n`, 0o600);
}
