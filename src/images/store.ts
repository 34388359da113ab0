import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { cachePaths } from "../paths/layout.js";
import type { ImageInfo } from "./image-info.js";

export const imageInfoSchema = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  dir: z.string().min(1),
  kernel: z.string().min(1),
  initrd: z.string().min(1),
  cmdline: z.string(),
  kernelRelease: z.string().min(1),
  createdAt: z.string(),
  sizeBytes: z.number().int().nonnegative(),
  inputs: z.record(z.string(), z.unknown()),
});

export const IMAGE_JSON = "image.json";

function exists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads a built image's image.json; undefined when absent, invalid, or its kernel/initrd are
 * gone. Paths are re-anchored at `dir`, so a cache directory that moved still works.
 */
export function readImageInfo(dir: string): ImageInfo | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(dir, IMAGE_JSON), "utf8"));
  } catch {
    return undefined;
  }
  const parsed = imageInfoSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const info: ImageInfo = {
    ...parsed.data,
    dir,
    kernel: join(dir, parsed.data.kernel.split("/").pop() ?? ""),
    initrd: join(dir, parsed.data.initrd.split("/").pop() ?? ""),
  };
  return exists(info.kernel) && exists(info.initrd) ? info : undefined;
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Every complete image in the cache, newest first. Build temp dirs (dot-prefixed) are skipped. */
export function listImages(name?: string): ImageInfo[] {
  const root = cachePaths.images();
  const out: ImageInfo[] = [];
  for (const imageName of listDir(root)) {
    if (imageName.startsWith(".") || (name !== undefined && imageName !== name)) continue;
    for (const digest of listDir(join(root, imageName))) {
      if (digest.startsWith(".") || !/^[0-9a-f]{64}$/.test(digest)) continue;
      const info = readImageInfo(cachePaths.image(imageName, digest));
      if (info !== undefined) out.push(info);
    }
  }
  return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

/**
 * A built-in image by name ("corral-default", the newest build) or by digest: `sha256:` or
 * not, a unique prefix of at least 12 hex digits. No network, no build.
 */
export function findBuiltinImage(ref: string): ImageInfo | undefined {
  const images = listImages();
  const hex = ref.replace(/^sha256:/, "");
  return (
    images.find((i) => i.name === ref) ??
    (/^[0-9a-f]{12,64}$/.test(hex) ? images.find((i) => i.digest.startsWith(hex)) : undefined)
  );
}
