/**
 * The `cloudInit` part of a VM spec: what corral renders into a NoCloud seed's user-data
 * (user-data.ts, docs/cloud-init.md). camelCase here, cloud-init's snake_case in the YAML.
 * Every object is strict and every error names its field, e.g.
 * `cloudInit.users[0].sshAuthorizedKeys[1]: not an OpenSSH public key`.
 */
import { z } from "zod";
import { CorralError } from "../errors.js";

/** Where the agent step writes; user write_files may not touch these. */
export const AGENT_BINARY_PATH = "/usr/local/sbin/corral-agent";
export const AGENT_UNIT_PATH = "/etc/systemd/system/corral-agent.service";
const RESERVED_PATHS = new Set([AGENT_BINARY_PATH, AGENT_UNIT_PATH]);

/** Linux user and group names as useradd accepts them by default (NAME_REGEX). */
const ACCOUNT_NAME = /^[a-z_][a-z0-9_-]{0,30}\$?$/;
const SSH_PUBLIC_KEY =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( .*)?$/;
const DEBIAN_PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const TIMEZONE = /^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+)*$/;
const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

const accountName = (what: string) =>
  z
    .string()
    .regex(
      ACCOUNT_NAME,
      `${what} names are lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters`,
    );

const sshKey = z
  .string()
  .refine((k) => !/[\r\n]/.test(k), "an SSH key is one line (no newlines)")
  .refine(
    (k) => SSH_PUBLIC_KEY.test(k),
    "not an OpenSSH public key (e.g. ssh-ed25519 AAAAC3Nza... user@host)",
  );

const absolutePath = z
  .string()
  .startsWith("/", "must be an absolute path")
  .refine((p) => !p.includes("\0"), "paths cannot contain NUL");

/** A command: a string run by `sh -c`, or an argv array run as is. */
const command = z.union(
  [
    z.string().min(1, "an empty command"),
    z.array(z.string()).min(1, "an argv needs at least the program"),
  ],
  { error: "a command is a string (run by sh) or an array of strings (argv)" },
);

const user = z.strictObject({
  name: accountName("user"),
  groups: z.array(accountName("group")).optional(),
  /** true: passwordless sudo ("ALL=(ALL) NOPASSWD:ALL"). */
  sudo: z.boolean().optional(),
  shell: absolutePath.refine((p) => !/\s/.test(p), "a shell path has no spaces").optional(),
  sshAuthorizedKeys: z.array(sshKey).optional(),
  /** Lock the password (key-only login); cloud-init's lock_passwd. */
  lockPassword: z.boolean().default(true),
});

const writeFile = z
  .strictObject({
    path: absolutePath.refine(
      (p) => !RESERVED_PATHS.has(p),
      "this path belongs to corral's agent step",
    ),
    content: z.string(),
    /** "base64": `content` is base64 of the bytes to write (binary files). */
    encoding: z.enum(["text", "base64"]).default("text"),
    permissions: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'an octal string such as "0644"')
      .optional(),
    owner: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]*\$?:[a-z_][a-z0-9_-]*\$?$/, 'write the owner as "user:group"')
      .optional(),
    append: z.boolean().optional(),
    /**
     * Write in the final stage instead of the init stage. Default: true when `owner` is set
     * and is not root:root, because write_files runs before users and groups are created
     * (cloud-init fails the whole module on an unknown owner).
     */
    defer: z.boolean().optional(),
  })
  .superRefine((file, ctx) => {
    if (file.encoding === "base64" && !BASE64.test(file.content)) {
      ctx.addIssue({ code: "custom", path: ["content"], message: "is not base64" });
    }
  });

const raw = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  for (const key of ["write_files", "runcmd", "bootcmd"]) {
    if (key in value && !Array.isArray(value[key])) {
      ctx.addIssue({ code: "custom", path: [key], message: "must be a list" });
    }
  }
  const files = value.write_files;
  if (Array.isArray(files)) {
    files.forEach((f, i) => {
      const path = (f as { path?: unknown } | null)?.path;
      if (typeof path === "string" && RESERVED_PATHS.has(path)) {
        ctx.addIssue({
          code: "custom",
          path: ["write_files", i, "path"],
          message: "this path belongs to corral's agent step",
        });
      }
    });
  }
});

export const cloudInitSchema = z.strictObject({
  users: z.array(user).default([]),
  /** Keys for the image's default user (cloud-init's top-level ssh_authorized_keys). */
  sshAuthorizedKeys: z.array(sshKey).default([]),
  /** Debian packages installed on first boot (after `apt-get update`). */
  packages: z
    .array(z.string().regex(DEBIAN_PACKAGE, "not a Debian package name (e.g. curl, libssl3)"))
    .default([]),
  writeFiles: z.array(writeFile).default([]),
  /** Final stage, once per instance, after the agent is started. */
  runcmd: z.array(command).default([]),
  /** Every boot, early (before write_files). */
  bootcmd: z.array(command).default([]),
  hostname: z
    .string()
    .regex(HOSTNAME, "a host name is dot-separated labels of letters, digits and '-'")
    .optional(),
  timezone: z.string().regex(TIMEZONE, "a tz database name such as Europe/Paris or UTC").optional(),
  /**
   * Any other cloud-config keys, merged last at the top level: a key here replaces the one
   * corral renders (e.g. `users`, `write_files`, `runcmd`), except that corral's agent step
   * (its two write_files entries and its first two runcmd entries) is always kept.
   */
  raw: raw.optional(),
});

export type CloudInitSpecInput = z.input<typeof cloudInitSchema>;
export type CloudInitSpec = z.output<typeof cloudInitSchema>;

/** `cloudInit.users[0].sshAuthorizedKeys[1]` from zod's path. */
export function fieldPath(base: string, path: readonly PropertyKey[]): string {
  let out = base;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (typeof part === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) {
      out += out === "" ? part : `.${part}`;
    } else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

/** Parses the `cloudInit` part of a spec; the error names the offending field. */
export function parseCloudInit(input: unknown, base = "cloudInit"): CloudInitSpec {
  const result = cloudInitSchema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  let path = issue.path;
  let message = issue.message;
  if (issue.code === "unrecognized_keys" && issue.keys.length > 0) {
    path = [...path, issue.keys[0]!];
    message = "unknown field";
  }
  const field = fieldPath(base, path);
  throw new CorralError("INVALID_SPEC", `${field}: ${message}`, {
    field,
    hint: `check ${field} (docs/cloud-init.md lists the fields)`,
    details: { issues: result.error.issues },
  });
}
