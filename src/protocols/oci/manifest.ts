/**
 * Manifests and indexes as the registry sent them, checked just enough that every digest
 * and size we later trust (paths, downloads) is well formed.
 */
import { CorralError } from "../../errors.js";
import { parseDigest } from "./digest.js";
import { isSchema1, type ManifestKind, MediaType, manifestKind } from "./media-types.js";

/** A descriptor's platform, as the image spec writes it (platform.ts normalises and selects). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface ImageManifest {
  kind: "image";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

export type Manifest = ImageManifest | ImageIndex;

function malformed(what: string, problem: string): CorralError {
  return new CorralError("REGISTRY", `${what}: ${problem}`, {
    hint: "the registry sent a manifest corral cannot read; check the image with another tool",
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (!isRecord(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

function descriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value)) throw malformed(what, "a descriptor is not an object");
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== "string") throw malformed(what, "a descriptor has no mediaType");
  if (typeof digest !== "string") throw malformed(what, "a descriptor has no digest");
  parseDigest(digest, `${what}: descriptor digest`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw malformed(what, `descriptor ${digest} has an invalid size`);
  }
  const out: Descriptor = { mediaType, digest, size };
  const p = value.platform;
  if (isRecord(p) && typeof p.os === "string" && typeof p.architecture === "string") {
    out.platform = { os: p.os, architecture: p.architecture };
    if (typeof p.variant === "string" && p.variant !== "") out.platform.variant = p.variant;
  }
  const annotations = stringMap(value.annotations);
  if (annotations !== undefined) out.annotations = annotations;
  if (Array.isArray(value.urls)) out.urls = value.urls.filter((u) => typeof u === "string");
  return out;
}

/**
 * The body's own `mediaType` wins over Content-Type (some registries answer
 * `application/json`); OCI allows it to be absent, so the shape decides last.
 */
function detectMediaType(body: Record<string, unknown>, contentType: string | undefined): string {
  if (body.schemaVersion === 1) return MediaType.dockerSchema1;
  if (typeof body.mediaType === "string") return body.mediaType;
  const header = contentType?.split(";")[0]?.trim();
  if (header !== undefined && (manifestKind(header) !== undefined || isSchema1(header))) {
    return header;
  }
  if (Array.isArray(body.manifests)) return MediaType.ociIndex;
  if (isRecord(body.config) && Array.isArray(body.layers)) return MediaType.ociManifest;
  return header ?? "unknown";
}

export function parseManifest(
  bytes: Uint8Array,
  contentType: string | undefined,
  what: string,
): Manifest {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw malformed(what, "the manifest is not valid JSON");
  }
  if (!isRecord(body)) throw malformed(what, "the manifest is not a JSON object");
  const mediaType = detectMediaType(body, contentType);
  if (isSchema1(mediaType)) {
    throw new CorralError("UNSUPPORTED", `${what} is a Docker schema 1 manifest`, {
      hint: "schema 1 images are deprecated; rebuild or re-push the image with a current tool",
    });
  }
  const kind: ManifestKind | undefined = manifestKind(mediaType);
  if (kind === undefined) {
    throw new CorralError("UNSUPPORTED", `${what} has unsupported media type ${mediaType}`, {
      hint: "corral pulls container images (OCI or Docker schema 2 manifests and indexes)",
    });
  }
  if (kind === "index") {
    if (!Array.isArray(body.manifests)) throw malformed(what, "the index has no manifests");
    return {
      kind,
      mediaType,
      manifests: body.manifests.map((m) => descriptor(m, what)),
    };
  }
  if (!Array.isArray(body.layers)) throw malformed(what, "the manifest has no layers");
  const manifest: ImageManifest = {
    kind,
    mediaType,
    config: descriptor(body.config, what),
    layers: body.layers.map((l) => descriptor(l, what)),
  };
  const annotations = stringMap(body.annotations);
  if (annotations !== undefined) manifest.annotations = annotations;
  return manifest;
}
