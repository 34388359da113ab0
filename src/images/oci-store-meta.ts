/**
 * `images/oci/<hex>/image.json`: what a pulled image is, next to its rootfs. Keyed by the
 * manifest digest, so every reference to the same image shares one rootfs and one record.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../base/atomic.js";
import { ROOTFS_FILE } from "./oci/rootfs.js";
import { ociStorePaths } from "./oci-store-refs.js";

export const OCI_IMAGE_JSON = "image.json";

export const runConfigSchema = z.object({
  env: z.array(z.string()),
  workingDir: z.string().optional(),
  user: z.string().optional(),
  entrypoint: z.array(z.string()).optional(),
  cmd: z.array(z.string()).optional(),
});

/** The part of the OCI config a VM needs to run the image's process. */
export type OciRunConfig = z.infer<typeof runConfigSchema>;

const metaSchema = z.object({
  version: z.literal(1),
  manifestDigest: z.string(),
  configDigest: z.string(),
  indexDigest: z.string().optional(),
  /** The reference it was first pulled as (for humans; refs.json is the truth). */
  pulledAs: z.string(),
  rootfs: z.string(),
  config: runConfigSchema,
  platform: z.string(),
  /** The image's own creation time from its config, when it has one. */
  created: z.string().optional(),
  sizeBytes: z.number().int().nonnegative(),
  /** Lowest first; prune keeps these blobs while any ref points at the image. */
  layerDigests: z.array(z.string()),
  layerBytes: z.number().int().nonnegative(),
  builtAt: z.string(),
});

export type OciImageMeta = z.infer<typeof metaSchema>;

export function writeImageMeta(dir: string, meta: OciImageMeta): void {
  writeFileAtomicSync(join(dir, OCI_IMAGE_JSON), `${JSON.stringify(meta, null, 2)}\n`);
}

/**
 * The record of a pulled image, with `rootfs` re-anchored at its directory; undefined when
 * the record is missing or invalid or the rootfs is gone.
 */
export function readImageMeta(digest: string): OciImageMeta | undefined {
  const dir = ociStorePaths.imageDir(digest);
  let parsed: OciImageMeta;
  try {
    const result = metaSchema.safeParse(
      JSON.parse(readFileSync(join(dir, OCI_IMAGE_JSON), "utf8")),
    );
    if (!result.success) return undefined;
    parsed = result.data;
  } catch {
    return undefined;
  }
  if (parsed.manifestDigest !== digest) return undefined;
  const rootfs = join(dir, ROOTFS_FILE);
  try {
    if (!statSync(rootfs).isFile()) return undefined;
  } catch {
    return undefined;
  }
  return { ...parsed, rootfs };
}

function stringArray(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((v) => typeof v === "string")
    ? (value as string[])
    : undefined;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** Picks the runtime fields out of an OCI/Docker image config, ignoring malformed ones. */
export function runConfigOf(imageConfig: Record<string, unknown>): OciRunConfig {
  const raw = imageConfig.config;
  const c = typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>) : {};
  const out: OciRunConfig = { env: stringArray(c.Env) ?? [] };
  const workingDir = nonEmptyString(c.WorkingDir);
  if (workingDir !== undefined) out.workingDir = workingDir;
  const user = nonEmptyString(c.User);
  if (user !== undefined) out.user = user;
  const entrypoint = stringArray(c.Entrypoint);
  if (entrypoint !== undefined) out.entrypoint = entrypoint;
  const cmd = stringArray(c.Cmd);
  if (cmd !== undefined) out.cmd = cmd;
  return out;
}
