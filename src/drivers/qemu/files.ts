/**
 * The files QEMU's driver keeps in a VM's private run directory (Lima's filenames.go: the
 * driver names its own files; paths/layout.ts owns the directories they live in).
 */
import { join } from "node:path";

export function qemuFiles(runDir: string) {
  return {
    /** QMP, QEMU's control API. */
    qmpSocket: join(runDir, "qmp.sock"),
    /** vhost-user socket between QEMU and the vhost-device-vsock sidecar. */
    vhostUserSocket: join(runDir, "vhost-vsock.sock"),
    /** A snapshot's migration stream arrives here (QEMU connects, corral writes the file). */
    migrationSocket: join(runDir, "migrate.sock"),
  };
}

/** virtiofsd's vhost-user socket for share `i` (the shared memfd lets it map guest memory). */
export function virtiofsSocket(runDir: string, i: number): string {
  return join(runDir, `vfs${i}.sock`);
}

/** The memory and device state of a snapshot (QEMU's migration stream), in its directory. */
export const MEMORY_FILE = "memory.bin";
