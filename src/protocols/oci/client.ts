/**
 * OCI distribution client: resolves an image reference to a platform's manifest and config,
 * and downloads layers into the verified blob cache. See docs/oci.md.
 */
import type { ProgressListener } from "../../base/progress.js";
import { CorralError, throwIfCancelled } from "../../errors.js";
import { Authenticator, pullScope } from "./auth.js";
import { cachedBlob, removeStaleTemps, writeBlob } from "./blob-store.js";
import { type BasicCredentials, loadDockerConfig } from "./credentials.js";
import { digestLike, sha256Digest } from "./digest.js";
import { type Descriptor, type ImageManifest, type Manifest, parseManifest } from "./manifest.js";
import {
  CONFIG_MEDIA_TYPES,
  type LayerCompression,
  layerCompression,
  MANIFEST_ACCEPT,
} from "./media-types.js";
import { DEFAULT_PLATFORM, type Platform, selectPlatform } from "./platform.js";
import { formatReference, parseReference, type Reference, type Repository } from "./reference.js";
import { type RetryOptions, withRetries } from "./retry.js";
import { header, readLimited, Transport } from "./transport.js";

export interface OciClientOptions {
  /** Registries (`host[:port]`) that may be spoken to over plain HTTP. Loopback always may. */
  insecureRegistries?: string[];
  /** Explicit credentials (`--creds`); they win over Docker's config.json. */
  credentials?: BasicCredentials;
  /** Docker config with `auths` (default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`). */
  dockerConfigPath?: string;
  /** Default progress listener for blob downloads. */
  onProgress?: ProgressListener;
  retry?: RetryOptions;
  /** Headers and body inactivity timeout (default 60 s). */
  timeoutMs?: number;
}

export interface Layer {
  digest: string;
  size: number;
  mediaType: string;
  compression: LayerCompression;
}

export interface ResolvedImage {
  reference: Reference;
  /** Digest of the platform-specific image manifest (the image's identity). */
  manifestDigest: string;
  /** Digest of the index it was selected from, when the reference named an index. */
  indexDigest?: string;
  manifest: ImageManifest;
  /** The image config JSON (Env, Cmd, rootfs.diff_ids...), digest-verified. */
  config: Record<string, unknown>;
  configDescriptor: Descriptor;
  layers: Layer[];
}

export interface ResolveOptions {
  platform?: Platform;
  /** Aborts the manifest and config requests (CANCELLED). */
  signal?: AbortSignal;
}

export interface FetchBlobOptions {
  onProgress?: ProgressListener;
  /** Re-hash an already cached blob instead of trusting its size (default false). */
  verifyCached?: boolean;
  /** Aborts the download and removes its temp file (CANCELLED). */
  signal?: AbortSignal;
}

/** containerd's limit: a manifest bigger than this is not a manifest. */
const MANIFEST_LIMIT = 4 * 1024 * 1024;
const CONFIG_LIMIT = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;

function toRepository(repo: Repository | string): Repository {
  return typeof repo === "string" ? parseReference(repo) : repo;
}

export class OciClient {
  private readonly transport: Transport;
  private readonly retry: RetryOptions;
  private readonly onProgress: ProgressListener | undefined;
  /**
   * Same-process pulls of one blob share a download when they share an AbortSignal (or have
   * none): one caller's abort must not fail another's pull.
   */
  private readonly inflight = new Map<
    string,
    { signal: AbortSignal | undefined; done: Promise<string> }
  >();

  constructor(opts: OciClientOptions = {}) {
    this.retry = opts.retry ?? {};
    this.onProgress = opts.onProgress;
    this.transport = new Transport({
      insecureRegistries: opts.insecureRegistries ?? [],
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    const explicit = opts.credentials;
    let fromConfig: Map<string, BasicCredentials> | undefined;
    const configPath = opts.dockerConfigPath;
    this.transport.auth = new Authenticator({
      credentialsFor: (registry) => {
        if (explicit !== undefined) return explicit;
        fromConfig ??= loadDockerConfig(configPath);
        return fromConfig.get(registry.toLowerCase());
      },
      plainHttpAllowed: (host) => this.transport.plainHttpAllowed(host),
      get: (url, headers) => this.transport.rawGet(url, headers),
      retry: this.retry,
    });
  }

  /** Releases pooled connections. */
  async close(): Promise<void> {
    await this.transport.close();
  }

  /**
   * Fetches a manifest by tag or digest. A digest reference is verified against the bytes;
   * for a tag, the registry's Docker-Content-Digest (when sent) must match them too.
   */
  async fetchManifest(
    ref: Reference,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ manifest: Manifest; digest: string; bytes: Buffer }> {
    const target = ref.digest ?? ref.tag ?? "latest";
    const what = `manifest ${formatReference(ref)}`;
    const { signal } = opts;
    return withRetries(
      what,
      this.retry,
      async () => {
        const res = await this.transport.request({
          registry: ref.registry,
          scope: pullScope(ref.repository),
          path: `/v2/${ref.repository}/manifests/${target}`,
          headers: { accept: MANIFEST_ACCEPT },
          what,
          ...(signal === undefined ? {} : { signal }),
        });
        const bytes = await readLimited(res, MANIFEST_LIMIT);
        if (bytes === undefined) {
          throw new CorralError("REGISTRY", `${what} is larger than ${MANIFEST_LIMIT} bytes`);
        }
        const expected = ref.digest ?? header(res, "docker-content-digest");
        let digest = sha256Digest(bytes);
        if (expected !== undefined) {
          const actual = digestLike(expected, bytes);
          if (actual !== expected) {
            throw new CorralError(
              "CHECKSUM_MISMATCH",
              `${what}: the manifest's digest is ${actual}, expected ${expected}`,
              { hint: "the registry or a proxy is serving wrong content" },
            );
          }
          digest = expected;
        }
        const manifest = parseManifest(bytes, header(res, "content-type"), what);
        return { manifest, digest, bytes };
      },
      signal,
    );
  }

  /** Resolves `ref` (a string or parsed reference) for one platform (default linux/amd64). */
  async resolve(ref: Reference | string, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    const reference = typeof ref === "string" ? parseReference(ref) : ref;
    const platform = opts.platform ?? DEFAULT_PLATFORM;
    const signalOpt = opts.signal === undefined ? {} : { signal: opts.signal };
    const top = await this.fetchManifest(reference, signalOpt);
    let manifest = top.manifest;
    let manifestDigest = top.digest;
    let indexDigest: string | undefined;
    if (manifest.kind === "index") {
      indexDigest = top.digest;
      const chosen = selectPlatform(manifest.manifests, platform, formatReference(reference));
      const child = await this.fetchManifest({ ...reference, digest: chosen.digest }, signalOpt);
      if (child.bytes.length !== chosen.size) {
        throw new CorralError(
          "CHECKSUM_MISMATCH",
          `manifest ${chosen.digest} is ${child.bytes.length} bytes, the index says ${chosen.size}`,
        );
      }
      manifest = child.manifest;
      manifestDigest = child.digest;
      if (manifest.kind === "index") {
        throw new CorralError(
          "UNSUPPORTED",
          `${formatReference(reference)}: nested indexes are not supported`,
        );
      }
    }
    const image = manifest;
    const layers = image.layers.map((l): Layer => {
      const compression = layerCompression(l.mediaType);
      if (compression === undefined) {
        throw new CorralError(
          "UNSUPPORTED",
          `${formatReference(reference)}: layer ${l.digest} has unsupported media type ${l.mediaType}`,
          { hint: "corral unpacks tar layers, uncompressed or compressed with gzip or zstd" },
        );
      }
      return { digest: l.digest, size: l.size, mediaType: l.mediaType, compression };
    });
    if (!CONFIG_MEDIA_TYPES.has(image.config.mediaType)) {
      throw new CorralError(
        "UNSUPPORTED",
        `${formatReference(reference)} is not a container image (config type ${image.config.mediaType})`,
        { hint: "corral runs container images; artifacts such as charts cannot be booted" },
      );
    }
    const config = await this.fetchConfig(reference, image.config, opts.signal);
    const out: ResolvedImage = {
      reference,
      manifestDigest,
      manifest: image,
      config,
      configDescriptor: image.config,
      layers,
    };
    if (indexDigest !== undefined) out.indexDigest = indexDigest;
    return out;
  }

  private async fetchConfig(
    repo: Repository,
    desc: Descriptor,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, unknown>> {
    if (desc.size > CONFIG_LIMIT) {
      throw new CorralError("REGISTRY", `image config ${desc.digest} is too large (${desc.size})`);
    }
    const what = `config ${desc.digest} of ${repo.registry}/${repo.repository}`;
    const bytes = await withRetries(
      what,
      this.retry,
      async () => {
        const res = await this.transport.request({
          registry: repo.registry,
          scope: pullScope(repo.repository),
          path: `/v2/${repo.repository}/blobs/${desc.digest}`,
          what,
          ...(signal === undefined ? {} : { signal }),
        });
        return (await readLimited(res, desc.size)) ?? Buffer.alloc(0);
      },
      signal,
    );
    const actual = digestLike(desc.digest, bytes);
    if (bytes.length !== desc.size || actual !== desc.digest) {
      throw new CorralError(
        "CHECKSUM_MISMATCH",
        `${what}: got ${bytes.length} bytes with digest ${actual}, expected ${desc.size} bytes with ${desc.digest}`,
        { hint: "the registry or a proxy is serving wrong content" },
      );
    }
    try {
      const parsed: unknown = JSON.parse(bytes.toString("utf8"));
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        return parsed as Record<string, unknown>;
      }
    } catch {
      // Reported below.
    }
    throw new CorralError("REGISTRY", `${what} is not a JSON object`);
  }

  /**
   * Downloads a blob into the content-addressed cache (or finds it there) and returns its
   * path. The file at that path is always complete and verified.
   */
  async fetchBlob(
    repo: Repository | string,
    desc: Descriptor | Layer,
    opts: FetchBlobOptions = {},
  ): Promise<string> {
    const r = toRepository(repo);
    const descriptor: Descriptor = {
      mediaType: desc.mediaType,
      digest: desc.digest,
      size: desc.size,
    };
    throwIfCancelled(opts.signal);
    const cached = await cachedBlob(descriptor, opts.verifyCached ?? false);
    if (cached !== undefined) return cached;
    const key = descriptor.digest;
    const pending = this.inflight.get(key);
    if (pending !== undefined && pending.signal === opts.signal) return pending.done;
    const done = this.download(r, descriptor, opts).finally(() => {
      if (this.inflight.get(key)?.done === done) this.inflight.delete(key);
    });
    if (pending === undefined) this.inflight.set(key, { signal: opts.signal, done });
    return done;
  }

  private async download(
    repo: Repository,
    desc: Descriptor,
    opts: FetchBlobOptions,
  ): Promise<string> {
    await removeStaleTemps(desc.digest);
    const what = `blob ${desc.digest} of ${repo.registry}/${repo.repository}`;
    const onProgress = opts.onProgress ?? this.onProgress;
    const { signal } = opts;
    return withRetries(
      what,
      this.retry,
      async () => {
        const res = await this.transport.request({
          registry: repo.registry,
          scope: pullScope(repo.repository),
          path: `/v2/${repo.repository}/blobs/${desc.digest}`,
          what,
          ...(signal === undefined ? {} : { signal }),
        });
        return writeBlob(res.body, {
          desc,
          what,
          ...(onProgress === undefined ? {} : { onProgress }),
          ...(signal === undefined ? {} : { signal }),
        });
      },
      signal,
    );
  }
}
