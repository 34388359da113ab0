/** Turns CLI flag strings into spec fields; every error names the flag. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import {
  CorralError,
  parseCredentials,
  parseEnvPairs,
  parsePlatform,
  parsePortFlag,
  parseSize,
  parseVolumeFlag,
  type VmSpecInput,
} from "../index.js";
import { progressRenderer } from "./render.js";

export interface VmFlags {
  name?: string;
  image?: string;
  cpus?: string;
  memory?: string;
  env?: string[];
  accel?: string;
  machine?: string;
  kernelArg?: string[];
  disk?: string[];
  network?: string;
  mac?: string;
  ip?: string;
  gateway?: string;
  publish?: string[];
  allowHost?: string[];
  volume?: string[];
  diskSize?: string;
  cloudImage?: string;
  kernel?: string;
  initrd?: string;
  firmware?: string;
  cdrom?: string;
  cloudInit?: string;
  readyTimeout?: string;
}

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function parseIntFlag(value: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `${flag}: "${value}" is not a whole number from ${min} to ${max}`,
      {
        hint: `e.g. ${flag} ${min === 0 ? 10 : min}`,
      },
    );
  }
  return Number(value);
}

/** `--disk 10G` (a new empty disk) or `--disk PATH[:ro]` (an existing image file). */
export function parseDiskFlag(value: string): NonNullable<VmSpecInput["disks"]>[number] {
  if (/^\d+(\.\d+)?\s*[a-zA-Z]*$/.test(value)) {
    return { sizeMiB: Math.ceil(parseSize(value, "--disk") / (1024 * 1024)) };
  }
  const readOnly = value.endsWith(":ro");
  const path = readOnly ? value.slice(0, -3) : value;
  if (path === "") {
    throw new CorralError("INVALID_ARGUMENT", `--disk: "${value}" names no file`, {
      hint: "use --disk 10G for a new disk, or --disk /path/disk.img[:ro]",
    });
  }
  return { path: resolve(path), readOnly };
}

export function specFromFlags(flags: VmFlags): Partial<VmSpecInput> {
  const spec: Partial<VmSpecInput> = {};
  if (flags.name !== undefined) spec.name = flags.name;
  if (flags.image !== undefined) spec.image = flags.image;
  if (flags.cpus !== undefined) spec.cpus = parseIntFlag(flags.cpus, "--cpus", 1, 64);
  if (flags.memory !== undefined) spec.memory = flags.memory;
  if (flags.env !== undefined) spec.env = parseEnvPairs(flags.env);
  if (flags.accel !== undefined) spec.accel = flags.accel as VmSpecInput["accel"];
  if (flags.machine !== undefined) spec.machine = flags.machine as VmSpecInput["machine"];
  if (flags.kernelArg !== undefined) spec.cmdline = flags.kernelArg;
  if (flags.disk !== undefined) spec.disks = flags.disk.map(parseDiskFlag);
  if (flags.network !== undefined) spec.network = flags.network;
  if (flags.mac !== undefined) spec.mac = flags.mac.toLowerCase();
  if (flags.ip !== undefined) spec.ip = flags.ip;
  if (flags.gateway !== undefined) spec.gateway = flags.gateway;
  if (flags.publish !== undefined) spec.ports = flags.publish.map(parsePortFlag);
  if (flags.allowHost !== undefined) spec.allowHosts = flags.allowHost;
  if (flags.volume !== undefined) spec.mounts = flags.volume.map(parseVolumeFlag);
  if (flags.diskSize !== undefined) {
    spec.diskSizeMiB = Math.ceil(parseSize(flags.diskSize, "--disk-size") / (1024 * 1024));
  }
  if (flags.cloudImage !== undefined) spec.cloudImage = resolve(flags.cloudImage);
  if (flags.kernel !== undefined) spec.kernel = resolve(flags.kernel);
  if (flags.initrd !== undefined) spec.initrd = resolve(flags.initrd);
  if (flags.firmware !== undefined) spec.firmware = flags.firmware as VmSpecInput["firmware"];
  if (flags.cdrom !== undefined) spec.cdrom = resolve(flags.cdrom);
  if (flags.cloudInit !== undefined) spec.cloudInit = readCloudInitFile(flags.cloudInit);
  if (flags.readyTimeout !== undefined) {
    spec.readyTimeoutMs = parseIntFlag(flags.readyTimeout, "--ready-timeout", 1, 1800) * 1000;
  }
  return spec;
}

/** `--cloud-init FILE`: corral's cloud-init fields (docs/cloud-init.md), as YAML or JSON. */
function readCloudInitFile(path: string): VmSpecInput["cloudInit"] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CorralError("INVALID_ARGUMENT", `--cloud-init: cannot read ${path}`, {
      hint: "give a YAML file with users, writeFiles, runcmd, ... (see docs/cloud-init.md)",
      cause: err,
    });
  }
  try {
    // Loaded on use: most commands never read YAML, and every start-up pays for an import.
    const { parse } = createRequire(import.meta.url)("yaml") as typeof import("yaml");
    return parse(text) as VmSpecInput["cloudInit"];
  } catch (err) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `--cloud-init: ${path} is not valid YAML: ${(err as Error).message}`,
      {
        hint: "check the file's indentation and quoting",
      },
    );
  }
}

export interface PullFlags {
  insecureRegistry?: string[];
  creds?: string;
  platform?: string;
}

/** Registry options shared by `run` and `image pull`. */
export function pullOptionsFromFlags(flags: PullFlags) {
  return {
    insecureRegistries: flags.insecureRegistry,
    credentials: flags.creds === undefined ? undefined : parseCredentials(flags.creds),
    platform: flags.platform === undefined ? undefined : parsePlatform(flags.platform),
    onProgress: progressRenderer(true),
  };
}
