/**
 * A minimal test-only image pusher (monolithic blob uploads: POST an upload, PUT it with
 * ?digest=), so tests build images without docker or skopeo.
 */
import { createHash } from "node:crypto";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

export interface PushLayer {
  /** The blob as stored (already compressed). */
  data: Buffer;
  mediaType: string;
}

export interface PushImage {
  layers: PushLayer[];
  /** The image config (default: a minimal linux/amd64 config). */
  config?: Record<string, unknown>;
  /** Default OCI. */
  manifestMediaType?: typeof OCI_MANIFEST | typeof DOCKER_MANIFEST;
}

export interface PushPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface PushOptions extends Partial<PushImage> {
  /** Pushes a multi-arch index of these images instead of a single image. */
  index?: {
    mediaType?: typeof OCI_INDEX | typeof DOCKER_LIST;
    images: (PushImage & { platform: PushPlatform })[];
  };
  /** Bearer token for registries with token auth. */
  token?: string;
}

export interface Pushed {
  /** Digest of what the tag points to (the index for multi-arch pushes). */
  digest: string;
  bytes: Buffer;
  /** Per-platform image manifests of an index, in order. */
  images: { digest: string; configDigest: string; platform?: PushPlatform }[];
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function authHeaders(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

async function expectStatus(res: Response, status: number, what: string): Promise<void> {
  if (res.status !== status) {
    throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  }
}

export async function pushBlob(
  url: string,
  repo: string,
  data: Buffer,
  token?: string,
): Promise<string> {
  const digest = sha256(data);
  const head = await fetch(`${url}/v2/${repo}/blobs/${digest}`, {
    method: "HEAD",
    headers: authHeaders(token),
  });
  if (head.status === 200) return digest;
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, {
    method: "POST",
    headers: authHeaders(token),
  });
  await expectStatus(start, 202, `start upload to ${repo}`);
  const location = start.headers.get("location");
  if (location === null) throw new Error("upload without Location");
  const target = new URL(location, url);
  target.searchParams.set("digest", digest);
  const put = await fetch(target, {
    method: "PUT",
    headers: { ...authHeaders(token), "content-type": "application/octet-stream" },
    body: new Uint8Array(data),
  });
  await expectStatus(put, 201, `upload ${digest}`);
  return digest;
}

async function putManifest(
  url: string,
  repo: string,
  reference: string,
  mediaType: string,
  body: Buffer,
  token?: string,
): Promise<string> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { ...authHeaders(token), "content-type": mediaType },
    body: new Uint8Array(body),
  });
  await expectStatus(res, 201, `put manifest ${repo}:${reference}`);
  return sha256(body);
}

function defaultConfig(platform?: PushPlatform): Record<string, unknown> {
  return {
    architecture: platform?.architecture ?? "amd64",
    os: platform?.os ?? "linux",
    ...(platform?.variant === undefined ? {} : { variant: platform.variant }),
    config: { Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [] },
  };
}

async function pushOne(
  url: string,
  repo: string,
  image: PushImage,
  platform: PushPlatform | undefined,
  token: string | undefined,
): Promise<{ digest: string; configDigest: string; bytes: Buffer; mediaType: string }> {
  const mediaType = image.manifestMediaType ?? OCI_MANIFEST;
  const docker = mediaType === DOCKER_MANIFEST;
  const config = Buffer.from(JSON.stringify(image.config ?? defaultConfig(platform)));
  const configDigest = await pushBlob(url, repo, config, token);
  const layers = [];
  for (const layer of image.layers) {
    const digest = await pushBlob(url, repo, layer.data, token);
    layers.push({ mediaType: layer.mediaType, digest, size: layer.data.length });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: docker
        ? "application/vnd.docker.container.image.v1+json"
        : "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: config.length,
    },
    layers,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const digest = sha256(bytes);
  return { digest, configDigest, bytes, mediaType };
}

export async function pushImage(
  registryUrl: string,
  repo: string,
  tag: string,
  opts: PushOptions,
): Promise<Pushed> {
  const { token } = opts;
  if (opts.index === undefined) {
    const one = await pushOne(
      registryUrl,
      repo,
      { layers: opts.layers ?? [], ...opts },
      undefined,
      token,
    );
    await putManifest(registryUrl, repo, tag, one.mediaType, one.bytes, token);
    return {
      digest: one.digest,
      bytes: one.bytes,
      images: [{ digest: one.digest, configDigest: one.configDigest }],
    };
  }
  const indexType = opts.index.mediaType ?? OCI_INDEX;
  const images: Pushed["images"] = [];
  const manifests = [];
  for (const image of opts.index.images) {
    const one = await pushOne(registryUrl, repo, image, image.platform, token);
    await putManifest(registryUrl, repo, one.digest, one.mediaType, one.bytes, token);
    images.push({ digest: one.digest, configDigest: one.configDigest, platform: image.platform });
    manifests.push({
      mediaType: one.mediaType,
      digest: one.digest,
      size: one.bytes.length,
      platform: image.platform,
    });
  }
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: indexType, manifests }));
  const digest = await putManifest(registryUrl, repo, tag, indexType, bytes, token);
  return { digest, bytes, images };
}
