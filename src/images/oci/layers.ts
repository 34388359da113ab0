/**
 * Layer blobs on disk: which media types we unpack and how to get a tar stream out of them.
 * The registry client verified the digest already; here it only names the layer in errors.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { type Readable, Transform } from "node:stream";
import { CorralError } from "../../errors.js";
import { which } from "../../host/which.js";
import { type Compression, decompress } from "../debian/decompress.js";

export interface LayerBlob {
  /** The blob file (compressed as its media type says). */
  path: string;
  mediaType: string;
  digest: string;
}

const MEDIA_TYPES: Readonly<Record<string, Compression>> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gz",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zst",
  // Non-distributable layers have the same format; only their distribution rules differ.
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gz",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zst",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gz",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gz",
};

export function layerCompression(layer: LayerBlob): Compression {
  const kind = MEDIA_TYPES[layer.mediaType];
  if (kind === undefined) {
    throw new CorralError(
      "IMAGE_LAYER",
      `layer ${layer.digest} has an unsupported media type ${layer.mediaType}`,
      {
        hint: "corral unpacks OCI/Docker tar layers (uncompressed, gzip or zstd)",
        details: { digest: layer.digest, mediaType: layer.mediaType },
      },
    );
  }
  return kind;
}

export interface OpenedLayer {
  /** The uncompressed tar stream. */
  tar: Readable;
  /** Size of the blob on disk, for progress. */
  blobBytes: number;
}

/**
 * Opens a layer as a tar stream. `onBlobBytes` sees the compressed bytes as they are read, so
 * progress is measured against the blob size the user saw downloading.
 */
export async function openLayer(
  layer: LayerBlob,
  onBlobBytes: (bytes: number) => void,
): Promise<OpenedLayer> {
  const kind = layerCompression(layer);
  if (kind === "zst" && which("zstd") === undefined) {
    throw new CorralError("TOOL_MISSING", `zstd is needed to unpack layer ${layer.digest}`, {
      hint: "apt-get install zstd",
      details: { command: "zstd", aptPackage: "zstd" },
    });
  }
  const blobBytes = (await stat(layer.path)).size;
  const raw = createReadStream(layer.path, { highWaterMark: 1 << 20 });
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onBlobBytes(chunk.length);
      callback(null, chunk);
    },
  });
  raw.on("error", (err) => counter.destroy(err));
  return { tar: decompress(kind, raw.pipe(counter)), blobBytes };
}
