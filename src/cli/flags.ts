/**
 * Spec field -> the CLI flag that sets it (addVmFlags in commands/run.ts). The library's
 * errors name the spec field (`field: "diskSizeMiB"`, "ports[1]") because a REST or SDK user
 * cannot type a flag; the CLI shows the flag next to it.
 */
import type { VmSpecInput } from "../index.js";

/** Every spec field, so a new one needs a decision here (undefined: no flag sets it). */
const FLAGS = {
  name: "--name",
  backend: undefined,
  cpus: "--cpus",
  memory: "--memory",
  image: "--image",
  accel: "--accel",
  machine: "--machine",
  env: "--env",
  cmdline: "--kernel-arg",
  network: "--network",
  ip: "--ip",
  gateway: "--gateway",
  ports: "-p",
  allowHosts: "--allow-host",
  mounts: "-v",
  cloudImage: "--cloud-image",
  kernel: "--kernel",
  initrd: "--initrd",
  firmware: "--firmware",
  cdrom: "--cdrom",
  cloudInit: "--cloud-init",
  diskSizeMiB: "--disk-size",
  mac: "--mac",
  disks: "--disk",
  readyTimeoutMs: "--ready-timeout",
} as const satisfies Record<keyof VmSpecInput, string | undefined>;

/** Arguments of library calls that are not spec fields, and the flags that give them. */
const ARGUMENT_FLAGS: Record<string, string> = {
  memoryTarget: "--memory-target",
};

/** The flag for a field path such as "ports[1].hostPort" (its first segment), if any. */
export function flagFor(field: string): string | undefined {
  const top = /^[A-Za-z_][A-Za-z0-9_]*/.exec(field)?.[0];
  if (top === undefined) return undefined;
  if (Object.hasOwn(ARGUMENT_FLAGS, top)) return ARGUMENT_FLAGS[top];
  if (!Object.hasOwn(FLAGS, top)) return undefined;
  return FLAGS[top as keyof typeof FLAGS];
}

/**
 * The message with the flag next to the field: `memory (--memory): must be ...` when the
 * message starts with the field, else the flag after the message.
 */
export function withFlag(message: string, field: string | undefined): string {
  if (field === undefined) return message;
  const flag = flagFor(field);
  if (flag === undefined) return message;
  if (message.startsWith(`${field}:`)) {
    return `${field} (${flag})${message.slice(field.length)}`;
  }
  return `${message} (${flag})`;
}
