/**
 * The VM spec: the one source of truth for what a VM is. Every user input (CLI flags, spec
 * files, later API bodies) goes through `parseSpec`, which names the offending field.
 */
import { z } from "zod";
import { CorralError } from "../errors.js";
import { parseReference } from "../protocols/oci/reference.js";
import { parseSize } from "./size.js";

export const NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MIB = 1024 * 1024;

export const ACCELERATORS = ["auto", "kvm", "hvf", "tcg"] as const;
export type Accelerator = (typeof ACCELERATORS)[number];

export const MACHINES = ["q35", "microvm"] as const;

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
      ctx.addIssue({ code: "custom", message: (err as Error).message });
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
    backend: z.literal("qemu").default("qemu"),
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
     * (slirp) with DHCP and DNS; the host is reachable at 10.0.2.2.
     */
    network: z.enum(["none", "nat"]).default("none"),
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
    readyTimeoutMs: z.number().int().min(1000).max(600_000).default(90_000),
  })
  .strict();

export type VmSpecInput = z.input<typeof specSchema>;
export type VmSpec = z.output<typeof specSchema>;

export function parseSpec(input: unknown): VmSpec {
  const result = specSchema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = issue?.path.join(".") || "spec";
  throw new CorralError("INVALID_SPEC", `${field}: ${issue?.message ?? "invalid"}`, {
    hint: hintFor(field),
    details: { issues: result.error.issues },
  });
}

function hintFor(field: string): string {
  switch (field) {
    case "name":
      return "choose a name like my-vm (or omit --name to get a generated one)";
    case "memory":
      return "use e.g. --memory 512M or --memory 2G";
    case "cpus":
      return "use --cpus with a whole number from 1 to 64";
    case "network":
      return "use --network none (no NIC) or --network nat (tap and switch modes are not built yet)";
    case "mac":
      return "e.g. --mac 02:00:00:12:34:56 (locally administered, unicast)";
    case "image":
      return "use an image reference like alpine, alpine:3.20 or ghcr.io/org/app:tag";
    case "accel":
      return `use one of: ${ACCELERATORS.join(", ")}`;
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
      throw new CorralError("INVALID_ARGUMENT", `--env: "${pair}" is not KEY=VALUE`, {
        hint: "write --env NAME=value (NAME: letters, digits and '_')",
      });
    }
    env[key] = pair.slice(eq + 1);
  }
  return env;
}
