/**
 * `corral.images`: the built-in image and pulled OCI images of this cache directory. Pulls
 * honour an AbortSignal end to end (requests, downloads, unpacking, the ext4 build).
 */

import type { ProgressListener } from "../base/progress.js";
import { CorralError } from "../errors.js";
import { findOciImage, listOciImages, pullImage } from "../images/oci-store.js";
import {
  type PruneResult,
  pruneOciImages,
  type RemoveResult,
  removeOciImage,
} from "../images/oci-store-prune.js";
import { findBuiltinImage, listImages } from "../images/store.js";
import type { BasicCredentials } from "../protocols/oci/credentials.js";
import type { Platform } from "../protocols/oci/platform.js";
import type { Manager } from "../vm/manager.js";
import type { Scope } from "./scope.js";
import { builtinImageView, ociImageView, pullView } from "./to-view.js";
import type { ImageView, PullView } from "./views.js";

export type { PruneResult, RemoveResult };

export interface ImagePullOptions {
  signal?: AbortSignal;
  /**
   * Progress: `pull` (label = 12 hex digits of the layer digest, bytes), `cached`, `unpack`,
   * `ext4`, and `rootfs` (done at once when the image was already built).
   */
  onProgress?: ProgressListener;
  /** `linux/arm64` or a parsed platform; default linux/amd64. */
  platform?: string | Platform;
  /** Registry credentials; default: Docker's config.json (`docker login`). */
  credentials?: BasicCredentials;
  /** Registries (`host[:port]`) that may be spoken to over plain HTTP; loopback always may. */
  insecureRegistries?: string[];
}

/** `corral.images`: the built-in image and pulled OCI images of the cache directory. */
export class Images {
  /** @internal */
  constructor(
    private readonly manager: Manager,
    private readonly scope: Scope,
  ) {}

  /** Pulls an OCI image (`alpine`, `ghcr.io/org/app:1`, `name@sha256:...`) and builds its root filesystem. */
  pull(reference: string, options: ImagePullOptions = {}): Promise<PullView> {
    return this.scope.run(async () => pullView(await pullImage(reference, options)));
  }

  /** Built-in image builds (newest first), then pulled images (newest pull first). */
  list(): Promise<ImageView[]> {
    return this.scope.run(async () => [
      ...listImages().map(builtinImageView),
      ...listOciImages().map(ociImageView),
    ]);
  }

  /**
   * One image: a built-in one by name or digest, a pulled one by reference, `name@digest`,
   * or digest prefix (12+ hex digits). No network. IMAGE_NOT_FOUND when there is none.
   */
  inspect(reference: string): Promise<ImageView> {
    return this.scope.run(async () => {
      const builtin = findBuiltinImage(reference);
      if (builtin !== undefined) return builtinImageView(builtin);
      const oci = findOciImage(reference);
      if (oci !== undefined) return ociImageView(oci);
      throw new CorralError("IMAGE_NOT_FOUND", `no image "${reference}" on this machine`, {
        hint: "pull it first (images.pull), or list the images there are (images.list)",
      });
    });
  }

  /**
   * Drops a pulled image's reference (or all references of a digest); its root filesystem
   * goes once nothing refers to it and no VM or snapshot boots from it.
   */
  remove(reference: string): Promise<RemoveResult> {
    return this.scope.run(async () => removeOciImage(reference, await this.manager.imagesInUse()));
  }

  /** Deletes root filesystems no reference points at and layers no image uses. */
  prune(): Promise<PruneResult> {
    return this.scope.run(async () => pruneOciImages(await this.manager.imagesInUse()));
  }
}
