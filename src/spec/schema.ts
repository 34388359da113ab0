/**
 * The VM spec: the one source of truth for what a VM is. Every user input (CLI flags, spec
 * files, later API bodies) goes through `parseSpec`, which names the offending field.
 */
import { z } from "zod";
import { CorralError, isCorralError } from "../errors.js";
import { parseReference } from "../protocols/oci/reference.js";
import { parseAllowRule } from "./allow-rules.js";
import { cloudInitSchema, fieldPath } from "./cloud-init.js";
import { guestPathProblem } from "./mounts.js";
import { isIpv4, NETWORK_HINT, networkModeProblem, parseIpv4Cidr } from "./network.js";
import { parseSize } from "./size.js";

export const NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MIB = 1024 * 1024;

export const ACCELERATORS = ["auto", "kvm", "hvf", "tcg"] as const;
export type Accelerator = (typeof ACCELERATORS)[number];

export const MACHINES = ["q35", "microvm"] as const;

/**
 * The backends corral knows; which of them run on this host is the driver registry's answer.
 * "fake" is the test backend (drivers/fake): processes on the host, no virtualisation; it is
 * not registered unless a test or an embedder adds it.
 */
export const BACKENDS = ["qemu", "firecracker", "cloud-hypervisor", "vz", "fake"] as const;
export type Backend = (typeof BACKENDS)[number];

const sizeField = (field: string, minMiB: number, maxMiB: number) =>
  z.union([z.string(), z.number()]).transform((value, ctx) => {
    try {
      const bytes = parseSize(value, field);
      if (bytes < minMiB * MIB || bytes > maxMiB * MIB) {
        ctx.addIssue({ code: "custom", message: `must be between ${minMiB}M and ${maxMiB}M` });
        return z.NEVER;
      }
      if (bytes % MIB !== 0) {
        ctx.addIssue({ code: "custom", message: "must be a whole number of MiB" });
        return z.NEVER;
      }
      return bytes / MIB;
    } catch (err) {
      // parseSize names the field itself; the issue's path names it already.
      const message = (err as Error).message;
      ctx.addIssue({
        code: "custom",
        message: message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message,
      });
      return z.NEVER;
    }
  });

export const specSchema = z
  .object({
    name: z
      .string()
      .regex(
        NAME_PATTERN,
        "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters",
      ),
    backend: z.enum(BACKENDS).default("qemu"),
    cpus: z.number().int().min(1).max(64).default(1),
    /** MiB after parsing. */
    memory: sizeField("memory", 64, 256 * 1024).default(256),
    /** "corral-default" (the built-in initramfs) or an OCI image reference. */
    image: z
      .string()
      .min(1)
      .default("corral-default")
      .superRefine((value, ctx) => {
        if (value === "corral-default") return;
        try {
          parseReference(value);
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
        }
      }),
    accel: z.enum(ACCELERATORS).default("auto"),
    machine: z.enum(MACHINES).default("q35"),
    env: z
      .record(
        z.string().regex(ENV_KEY, "environment names are letters, digits and '_'"),
        z.string(),
      )
      .default({}),
    cmdline: z
      .array(z.string().regex(/^[^\s"'\\]+$/, "kernel parameters cannot contain spaces or quotes"))
      .default([]),
    /**
     * "none" (default): no NIC at all, only loopback. "nat": QEMU user-mode networking
     * (slirp) with DHCP and DNS; the host is reachable at 10.0.2.2. "tap:IFACE": a TAP
     * device. "switch:NAME": an L2 segment with the other VMs on that switch (spec/network.ts).
     */
    network: z
      .string()
      .default("none")
      .superRefine((value, ctx) => {
        const problem = networkModeProblem(value);
        if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
      }),
    /**
     * The guest's address on its NIC: "dhcp", or "A.B.C.D/LEN" (static). Default: DHCP for
     * nat, an address corral allocates for switch, none (link up only) for tap.
     */
    ip: z
      .string()
      .refine(
        (value) => value === "dhcp" || parseIpv4Cidr(value) !== undefined,
        'write "dhcp" or an IPv4 address with its prefix length (8-30), e.g. 10.0.0.2/24',
      )
      .optional(),
    /** Default route for a static --ip. */
    gateway: z.string().refine(isIpv4, "write an IPv4 address, e.g. 10.0.0.1").optional(),
    /** TCP port forwards from the host to the guest, carried over vsock (no NIC needed). */
    ports: z
      .array(
        z
          .object({
            hostIp: z
              .string()
              .refine(isIpv4, "write an IPv4 address of this host")
              .default("127.0.0.1"),
            hostPort: z.number().int().min(1).max(65535),
            guestPort: z.number().int().min(1).max(65535),
          })
          .strict(),
      )
      .max(64, "at most 64 port forwards")
      .default([])
      .superRefine((ports, ctx) => {
        for (const [i, p] of ports.entries()) {
          // 0.0.0.0 covers every address: it clashes with any other forward of that port.
          const clash = ports
            .slice(0, i)
            .find(
              (q) =>
                q.hostPort === p.hostPort &&
                (q.hostIp === p.hostIp || q.hostIp === "0.0.0.0" || p.hostIp === "0.0.0.0"),
            );
          if (clash !== undefined) {
            ctx.addIssue({
              code: "custom",
              path: [i],
              message: `host port ${p.hostIp}:${p.hostPort} clashes with ${clash.hostIp}:${clash.hostPort}`,
            });
          }
        }
      }),
    /** Egress allowlist (`--allow-host`), enforced by the host's proxy; empty: no egress. */
    allowHosts: z
      .array(z.string())
      .max(256, "at most 256 rules")
      .default([])
      .superRefine((rules, ctx) => {
        for (const [i, rule] of rules.entries()) {
          try {
            parseAllowRule(rule);
          } catch (err) {
            const problem = isCorralError(err) ? err.details?.problem : undefined;
            const message =
              typeof problem === "string" ? `"${rule}": ${problem}` : (err as Error).message;
            ctx.addIssue({ code: "custom", path: [i], message });
          }
        }
      }),
    /** Host directories shared with the guest (virtio-9p), mounted before the agent is ready. */
    mounts: z
      .array(
        z
          .object({
            source: z.string().startsWith("/", "host directories must be absolute paths"),
            target: z.string().superRefine((value, ctx) => {
              const problem = guestPathProblem(value);
              if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
            }),
            readOnly: z.boolean().default(false),
            /** virtio-9p (built into QEMU, the default) or virtiofs (a virtiofsd per share). */
            type: z.enum(["9p", "virtiofs"]).default("9p"),
          })
          .strict(),
      )
      .max(16, "at most 16 shared folders")
      .default([])
      .superRefine((mounts, ctx) => {
        const targets = new Set<string>();
        for (const [i, m] of mounts.entries()) {
          if (targets.has(m.target)) {
            ctx.addIssue({
              code: "custom",
              path: [i, "target"],
              message: `${m.target} is mounted twice`,
            });
          }
          targets.add(m.target);
        }
      }),
    /**
     * A cloud image (qcow2 or raw disk file) as the root disk, booting its own kernel: given
     * with `kernel`/`initrd` (direct boot) or from the disk by UEFI firmware. Each VM writes
     * to its own qcow2 overlay; the file itself is never modified.
     */
    cloudImage: z.string().startsWith("/", "the cloud image path must be absolute").optional(),
    kernel: z.string().startsWith("/", "the kernel path must be absolute").optional(),
    initrd: z.string().startsWith("/", "the initrd path must be absolute").optional(),
    /** "direct": QEMU loads the kernel (corral's, or `kernel`). "uefi": OVMF boots from disks/cdrom. */
    firmware: z.enum(["direct", "uefi"]).default("direct"),
    /** An ISO attached read-only as a CD-ROM; UEFI boots it after the disks. */
    cdrom: z.string().startsWith("/", "the ISO path must be absolute").optional(),
    /** cloud-init user-data for a cloud image (NoCloud seed, regenerated at every start). */
    cloudInit: cloudInitSchema.optional(),
    /** Virtual size of an image's root disk in MiB (grown in the guest at boot). */
    diskSizeMiB: z
      .number()
      .int()
      .min(64)
      .max(16 * 1024 * 1024)
      .optional(),
    /** Locally administered unicast MAC; default: derived from the VM's id. */
    mac: z
      .string()
      .regex(
        /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/,
        "write the MAC as six lowercase hex pairs, e.g. 02:00:00:12:34:56",
      )
      .refine(
        (mac) => (Number.parseInt(mac.slice(0, 2), 16) & 1) === 0,
        "a MAC must be unicast (first byte even)",
      )
      .optional(),
    /** Extra data disks: a new empty one of `sizeMiB`, or an existing image file at `path`. */
    disks: z
      .array(
        z.union([
          z
            .object({
              sizeMiB: z
                .number()
                .int()
                .min(1)
                .max(16 * 1024 * 1024),
            })
            .strict(),
          z
            .object({
              path: z.string().startsWith("/", "disk paths must be absolute"),
              readOnly: z.boolean().default(false),
            })
            .strict(),
        ]),
      )
      .max(16, "at most 16 disks")
      .default([]),
    /** Milliseconds the guest gets to answer its agent before it is killed. */
    readyTimeoutMs: z.number().int().min(1000).max(1_800_000).optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    if (spec.ip !== undefined && spec.network === "none") {
      ctx.addIssue({
        code: "custom",
        path: ["ip"],
        message: 'a VM without a NIC (network "none") has no address to set',
      });
    }
    const issue = (path: string, message: string) =>
      ctx.addIssue({ code: "custom", path: [path], message });
    if (spec.cloudImage !== undefined && spec.image !== "corral-default") {
      issue("cloudImage", "a VM boots either an OCI image or a cloud image, not both");
    }
    if ((spec.kernel === undefined) !== (spec.initrd === undefined)) {
      issue(spec.kernel === undefined ? "kernel" : "initrd", "a kernel and an initrd go together");
    }
    if (spec.kernel !== undefined && spec.cloudImage === undefined) {
      issue("kernel", "a custom kernel boots a cloud image, and none is given");
    }
    if (spec.kernel !== undefined && spec.firmware === "uefi") {
      issue("kernel", "UEFI firmware boots the kernel from the disk: drop the kernel and initrd");
    }
    if (spec.cloudImage !== undefined && spec.kernel === undefined && spec.firmware !== "uefi") {
      issue(
        "cloudImage",
        "a cloud image boots its own kernel: with UEFI firmware, or from a given kernel and initrd",
      );
    }
    if (spec.cloudInit !== undefined && spec.cloudImage === undefined) {
      issue("cloudInit", "cloud-init runs in cloud images, not in corral's images");
    }
    if (spec.firmware === "uefi" && spec.machine === "microvm") {
      issue("firmware", "microvm has no UEFI firmware: use the q35 machine");
    }
    if (
      spec.firmware === "uefi" &&
      spec.cloudImage === undefined &&
      spec.cdrom === undefined &&
      spec.disks.length === 0
    ) {
      issue("firmware", "UEFI needs something to boot: a cloud image, a CD-ROM or a disk");
    }
    if (spec.gateway !== undefined && (spec.ip === undefined || spec.ip === "dhcp")) {
      ctx.addIssue({
        code: "custom",
        path: ["gateway"],
        message: "a gateway goes with a static address (ip A.B.C.D/LEN)",
      });
    }
  });

export type VmSpecInput = z.input<typeof specSchema>;
export type VmSpec = z.output<typeof specSchema>;

/** GRUB under OVMF runs out of memory loading a distribution kernel with 256 MiB (seen). */
const UEFI_DEFAULT_MEMORY = "512M";

export function parseSpec(input: unknown): VmSpec {
  const withDefaults =
    typeof input === "object" &&
    input !== null &&
    (input as { firmware?: unknown }).firmware === "uefi" &&
    (input as { memory?: unknown }).memory === undefined
      ? { ...input, memory: UEFI_DEFAULT_MEMORY }
      : input;
  const result = specSchema.safeParse(withDefaults);
  if (result.success) return result.data;
  throw specError(result.error);
}

/**
 * The INVALID_SPEC error for a failed parse of the spec: its first issue, with `field` set to
 * the issue's path ("memory", "ports[1]", "mounts[0].target") and a hint in the spec's terms
 * (front ends name their own inputs: the CLI adds the flag).
 */
export function specError(error: z.ZodError): CorralError {
  const issue = error.issues[0];
  let path = issue?.path ?? [];
  let message = issue?.message ?? "invalid";
  if (issue?.code === "unrecognized_keys" && issue.keys.length > 0) {
    path = [...path, issue.keys[0]!];
    message = "unknown field";
  }
  const field = fieldPath("", path) || "spec";
  return new CorralError("INVALID_SPEC", `${field}: ${message}`, {
    field,
    hint: hintFor(field),
    details: { issues: error.issues },
  });
}

function hintFor(field: string): string {
  const top = /^[A-Za-z]+/.exec(field)?.[0];
  switch (top) {
    case "name":
      return "e.g. my-vm (leave it out for a generated name)";
    case "memory":
      return "a size such as 512M or 2G";
    case "cpus":
      return "a whole number from 1 to 64";
    case "network":
      return NETWORK_HINT;
    case "ip":
      return 'an IPv4 address with its prefix length, e.g. 10.0.0.2/24 (gateway 10.0.0.1), or "dhcp"';
    case "gateway":
      return "an IPv4 address in the static address's subnet, e.g. 10.0.0.1";
    case "mac":
      return "e.g. 02:00:00:12:34:56 (locally administered, unicast)";
    case "image":
      return "use an image reference like alpine, alpine:3.20 or ghcr.io/org/app:tag";
    case "cloudImage":
    case "kernel":
    case "initrd":
      return "a cloud image (qcow2 or raw) boots by UEFI firmware, or directly from its own kernel and initrd";
    case "firmware":
      return 'use "direct" (the default) or "uefi"';
    case "accel":
      return `use one of: ${ACCELERATORS.join(", ")}`;
    case "machine":
      return `use one of: ${MACHINES.join(", ")}`;
    case "ports":
      return "forward host port 8080 to guest port 80 (host address 127.0.0.1 unless given); host ports must not clash";
    case "allowHosts":
      return "rules such as api.example.com:443, '*.npmjs.org' or 10.1.2.0/24:80";
    case "mounts":
      return "share an absolute host directory at an absolute guest path, e.g. /srv/data at /data";
    case "disks":
      return "a new disk's size (e.g. 10G) or the absolute path of a disk image";
    case "diskSizeMiB":
      return "the root disk's size, from 64M to 16T, e.g. 10G";
    default:
      return `check the value of ${field}`;
  }
}

/** Parses `K=V` strings (CLI --env) into a record, naming the bad entry. */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (eq <= 0 || !ENV_KEY.test(key)) {
      throw new CorralError("INVALID_ARGUMENT", `env: "${pair}" is not KEY=VALUE`, {
        field: "env",
        hint: "write NAME=value (NAME: letters, digits and '_')",
      });
    }
    env[key] = pair.slice(eq + 1);
  }
  return env;
}

/**
 * How long a guest gets to answer its agent: corral's own images are ready in seconds; a
 * cloud image runs systemd and cloud-init first (about a minute under TCG, more on a busy
 * host), and UEFI firmware adds its own start-up.
 */
export function readyTimeoutOf(spec: VmSpec): number {
  if (spec.readyTimeoutMs !== undefined) return spec.readyTimeoutMs;
  return spec.cloudImage !== undefined || spec.firmware === "uefi" ? 600_000 : 90_000;
}
