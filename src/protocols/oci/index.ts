export type {
  FetchBlobOptions,
  Layer,
  OciClientOptions,
  ResolvedImage,
  ResolveOptions,
} from "./client.js";
export { OciClient } from "./client.js";
export type { BasicCredentials } from "./credentials.js";
export { loadDockerConfig, parseCredentials } from "./credentials.js";
export type { Descriptor, ImageIndex, ImageManifest, Manifest } from "./manifest.js";
export { type LayerCompression, layerCompression, MediaType } from "./media-types.js";
export type { Platform } from "./platform.js";
export { DEFAULT_PLATFORM, formatPlatform, parsePlatform } from "./platform.js";
export type { Reference, Repository } from "./reference.js";
export { formatReference, parseReference } from "./reference.js";
export type { RetryOptions } from "./retry.js";
