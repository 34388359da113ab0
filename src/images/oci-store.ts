/**
 * Pulled OCI images as a local image store. Layout (under the cache, see core/layout.ts):
 *
 *   blobs/sha256/<hex>              layer blobs (protocols/oci blob cache)
 *   images/oci/<hex>/rootfs.ext4    the image's root filesystem, hex = manifest digest
 *   images/oci/<hex>/image.json     oci-store-meta.ts: run config, layers, sizes
 *   images/oci/refs.json            oci-store-refs.ts: reference -> manifest digest
 *
 * A pull resolves the reference, downloads missing layers, builds the rootfs (skipped when the
 * manifest's rootfs exists: same digest, same tree), then records the reference. Nothing here
 * touches the network except pullImage.
 */
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { noProgress, type ProgressListener } from "../base/progress.js";
import { cancelled, isCorralError, throwIfCancelled } from "../errors.js";
import { cachePaths } from "../paths/layout.js";
import { type Layer, OciClient } from "../protocols/oci/client.js";
import type { BasicCredentials } from "../protocols/oci/credentials.js";
import { formatPlatform, type Platform, parsePlatform } from "../protocols/oci/platform.js";
import { formatReference, parseReference } from "../protocols/oci/reference.js";
import { rootfsFromLayers, rootfsPath } from "./oci/rootfs.js";
import {
  type OciImageMeta,
  type OciRunConfig,
  readImageMeta,
  runConfigOf,
  writeImageMeta,
} from "./oci-store-meta.js";
import { markPull, matchRefs, type RefEntry, readRefs, updateRefs } from "./oci-store-refs.js";

export type { OciRunConfig } from "./oci-store-meta.js";
export {
  type PruneResult,
  pruneOciImages,
  type RemoveResult,
  removeOciImage,
} from "./oci-store-prune.js";

export interface OciImage {
  /** Normalized, e.g. `127.0.0.1:5000/test/busybox:1` or `docker.io/library/alpine:latest`. */
  reference: string;
  manifestDigest: string;
  /** The ext4 root filesystem (read-only base: VMs must write to an overlay). */
  rootfs: string;
  config: OciRunConfig;
  /** `os/arch[/variant]` from the image config. */
  platform: string;
  /** Size of the rootfs file. */
  sizeBytes: number;
  /** Last time this reference was pulled. */
  pulledAt: string;
  layers: number;
  /** Lowest layer first. */
  layerDigests: string[];
  /** Compressed size of the layers (what a pull downloads). */
  layerBytes: number;
  configDigest: string;
  /** The image's creation time from its config, when it has one. */
  created?: string;
}

export interface PullOptions {
  /** `host[:port]` that may be spoken to over plain HTTP (loopback always may). */
  insecureRegistries?: string[];
  credentials?: BasicCredentials;
  /** `linux/arm64` or a parsed platform; default linux/amd64. */
  platform?: string | Platform;
  /**
   * Events: `pull` (label = 12 hex digits of the layer digest, bytes), `cached` (a layer
   * already in the blob cache, done at once), `unpack` (same labels, compressed bytes read),
   * `ext4`, and `rootfs` (done, when the rootfs was already built).
   */
  onProgress?: ProgressListener;
  /** @internal Tests: registry timeouts and retries. */
  client?: OciClient;
  /**
   * Aborts the pull: requests, downloads (their temp files removed) and the rootfs build
   * stop, the reference is not recorded, and the pull rejects with kind `cancelled`. Layers
   * downloaded completely before the abort stay in the blob cache (verified, and used by the
   * next pull).
   */
  signal?: AbortSignal;
}

export interface PullResult extends OciImage {
  /** True when nothing was downloaded or built. */
  cached: boolean;
  /** Parts of layer entries that could not be kept (see images/oci/apply.ts). */
  warnings: string[];
}

function toImage(reference: string, entry: RefEntry, meta: OciImageMeta): OciImage {
  const image: OciImage = {
    reference,
    manifestDigest: meta.manifestDigest,
    rootfs: meta.rootfs,
    config: meta.config,
    platform: meta.platform,
    sizeBytes: meta.sizeBytes,
    pulledAt: entry.pulledAt,
    layers: meta.layerDigests.length,
    layerDigests: meta.layerDigests,
    layerBytes: meta.layerBytes,
    configDigest: meta.configDigest,
  };
  if (meta.created !== undefined) image.created = meta.created;
  return image;
}

export function shortDigest(digest: string): string {
  return digest.replace(/^[a-z0-9]+:/, "").slice(0, 12);
}

function blobCached(layer: Layer): boolean {
  try {
    return statSync(cachePaths.blob(layer.digest)).size === layer.size;
  } catch {
    return false;
  }
}

function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Runs `fn` over `items` with at most `limit` in flight (registries throttle wide fan-out).
 * The first failure stops the others (their signal aborts) and is thrown once they have
 * finished, so no download is still writing when the caller hears of it.
 */
async function eachLimited<T>(
  items: T[],
  limit: number,
  signal: AbortSignal | undefined,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
) {
  const stop = new AbortController();
  const both = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length && errors.length === 0; i = next++) {
      try {
        await fn(items[i] as T, both);
      } catch (err) {
        errors.push(err);
        stop.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}

function imagePlatform(config: Record<string, unknown>, asked: Platform | undefined): string {
  const { os, architecture, variant } = config;
  if (typeof os === "string" && typeof architecture === "string") {
    return formatPlatform({
      os,
      architecture,
      ...(typeof variant === "string" ? { variant } : {}),
    });
  }
  return formatPlatform(asked ?? { os: "linux", architecture: "amd64" });
}

export async function pullImage(ref: string, opts: PullOptions = {}): Promise<PullResult> {
  try {
    return await pull(ref, opts);
  } catch (err) {
    // undici and streams may notice an abort first and throw its bare reason.
    if (opts.signal?.aborted === true && !isCorralError(err)) throw cancelled(opts.signal);
    throw err;
  }
}

async function pull(ref: string, opts: PullOptions): Promise<PullResult> {
  const { signal } = opts;
  throwIfCancelled(signal);
  const reference = parseReference(ref);
  const name = formatReference(reference);
  const platform = typeof opts.platform === "string" ? parsePlatform(opts.platform) : opts.platform;
  const onProgress = opts.onProgress ?? noProgress;
  const client =
    opts.client ??
    new OciClient({
      ...(opts.insecureRegistries === undefined
        ? {}
        : { insecureRegistries: opts.insecureRegistries }),
      ...(opts.credentials === undefined ? {} : { credentials: opts.credentials }),
    });
  try {
    const resolved = await client.resolve(reference, {
      ...(platform === undefined ? {} : { platform }),
      ...(signal === undefined ? {} : { signal }),
    });
    const digest = resolved.manifestDigest;
    const layerDigests = resolved.layers.map((l) => l.digest);
    const unmark = await markPull([digest, ...layerDigests]);
    try {
      let downloaded = false;
      const path = rootfsPath(digest);
      const haveRootfs = fileExists(path) && readImageMeta(digest) !== undefined;
      let result: { sizeBytes: number; cached: boolean; warnings: string[] };
      if (haveRootfs) {
        onProgress({ phase: "rootfs", label: shortDigest(digest), done: true });
        result = { sizeBytes: statSync(path).size, cached: true, warnings: [] };
      } else {
        const paths = new Map<string, string>();
        await eachLimited(resolved.layers, 3, signal, async (layer, layerSignal) => {
          const label = shortDigest(layer.digest);
          if (blobCached(layer)) {
            onProgress({
              phase: "cached",
              label,
              current: layer.size,
              total: layer.size,
              done: true,
            });
          } else {
            downloaded = true;
          }
          paths.set(
            layer.digest,
            await client.fetchBlob(reference, layer, { onProgress, signal: layerSignal }),
          );
        });
        throwIfCancelled(signal);
        result = await rootfsFromLayers({
          manifestDigest: digest,
          layers: resolved.layers.map((l) => ({
            path: paths.get(l.digest) ?? cachePaths.blob(l.digest),
            mediaType: l.mediaType,
            digest: l.digest,
          })),
          onProgress: (e) =>
            onProgress(e.phase === "unpack" ? { ...e, label: shortDigest(e.label) } : e),
          ...(signal === undefined ? {} : { signal }),
        });
      }
      // The last moment to stop: from here on the image is recorded.
      throwIfCancelled(signal);
      const meta: OciImageMeta = {
        version: 1,
        manifestDigest: digest,
        configDigest: resolved.configDescriptor.digest,
        ...(resolved.indexDigest === undefined ? {} : { indexDigest: resolved.indexDigest }),
        pulledAs: name,
        rootfs: path,
        config: runConfigOf(resolved.config),
        platform: imagePlatform(resolved.config, platform),
        ...(typeof resolved.config.created === "string"
          ? { created: resolved.config.created }
          : {}),
        sizeBytes: result.sizeBytes,
        layerDigests,
        layerBytes: resolved.layers.reduce((sum, l) => sum + l.size, 0),
        builtAt: readImageMeta(digest)?.builtAt ?? new Date().toISOString(),
      };
      writeImageMeta(dirname(path), meta);
      const entry: RefEntry = { digest, pulledAt: new Date().toISOString() };
      await updateRefs((index) => {
        index.refs[name] = entry;
      });
      return {
        ...toImage(name, entry, meta),
        cached: !downloaded && result.cached,
        warnings: result.warnings,
      };
    } finally {
      unmark();
    }
  } finally {
    if (opts.client === undefined) await client.close();
  }
}

/**
 * A pulled image by reference (as typed or normalized), `name@digest`, or manifest digest /
 * unique prefix (>= 12 hex digits). No network. Throws only for an ambiguous prefix.
 */
export function findOciImage(refOrDigest: string): OciImage | undefined {
  const index = readRefs();
  const match = matchRefs(index, refOrDigest);
  const ref = match?.refs[0];
  if (match === undefined || ref === undefined) return undefined;
  const entry = index.refs[ref];
  const meta = readImageMeta(match.digest);
  return entry === undefined || meta === undefined ? undefined : toImage(ref, entry, meta);
}

/** One entry per reference, newest pull first; references whose image is broken are skipped. */
export function listOciImages(): OciImage[] {
  const index = readRefs();
  const out: OciImage[] = [];
  for (const [ref, entry] of Object.entries(index.refs)) {
    const meta = readImageMeta(entry.digest);
    if (meta !== undefined) out.push(toImage(ref, entry, meta));
  }
  return out.sort(
    (a, b) => b.pulledAt.localeCompare(a.pulledAt) || a.reference.localeCompare(b.reference),
  );
}
