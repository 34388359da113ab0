/**
 * Applies OCI layers, in order, onto a staging directory: the lowest layer first, each later
 * one adding, replacing and (through whiteouts) deleting. The result is handed to ext4.ts.
 */
import { mkdir, realpath } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError, cancelled, throwIfCancelled } from "../../errors.js";
import { LayerApplier } from "./entry.js";
import type { Fixups } from "./fixups.js";
import { type LayerBlob, openLayer } from "./layers.js";
import { UnsafePathError } from "./paths.js";
import { defaultOwnershipMode, type OwnershipMode, StagingTree } from "./tree.js";

export interface ApplyOptions {
  onProgress?: ProgressListener;
  /** Defaults to "chown" as root, "record" otherwise (see tree.ts). */
  ownership?: OwnershipMode;
  /** Stops the layer being unpacked and the ones after it (CANCELLED). */
  signal?: AbortSignal;
}

export interface StagedRootfs {
  dir: string;
  ownership: OwnershipMode;
  /** Devices, xattrs and (when recorded) ownership the ext4 step applies with debugfs. */
  fixups: Fixups;
  /** Entries kept only partly (e.g. an undecodable xattr); the image is still usable. */
  warnings: string[];
}

function layerError(err: unknown, layer: LayerBlob, entry: string): CorralError {
  if (err instanceof CorralError) return err;
  const details = { digest: layer.digest, entry };
  if (err instanceof UnsafePathError) {
    return new CorralError(
      "IMAGE_LAYER",
      `layer ${layer.digest}: refusing entry "${entry}": ${err.message}`,
      {
        hint: "the image is malformed or malicious; nothing was written outside its staging directory",
        details,
        cause: err,
      },
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  const at = entry === "" ? "" : ` at entry "${entry}"`;
  return new CorralError("IMAGE_LAYER", `layer ${layer.digest} failed to unpack${at}: ${message}`, {
    hint: "the layer blob may be corrupt or truncated; pull the image again",
    details,
    cause: err,
  });
}

async function applyLayer(
  tree: StagingTree,
  layer: LayerBlob,
  onProgress: ProgressListener,
  signal: AbortSignal | undefined,
): Promise<void> {
  let read = 0;
  let total: number | undefined;
  const opened = await openLayer(layer, (bytes) => {
    read += bytes;
    onProgress({ phase: "unpack", label: layer.digest, current: read, total });
  });
  total = opened.blobBytes;
  const applier = new LayerApplier(tree);
  const extract = tar.extract();
  const consume = (async () => {
    for await (const entry of extract) await applier.apply(entry);
  })().catch((err: unknown) => {
    // Nobody reads the rest of the layer: stop the decoder too.
    extract.destroy();
    opened.tar.destroy();
    throw err;
  });
  const [piped, consumed] = await Promise.allSettled([
    pipeline(opened.tar, extract, signal === undefined ? {} : { signal }),
    consume,
  ]);
  if (signal?.aborted === true) throw cancelled(signal);
  // The consumer's error says what went wrong; the pipeline's is then only "premature close".
  if (consumed.status === "rejected") throw layerError(consumed.reason, layer, applier.current);
  if (piped.status === "rejected") throw layerError(piped.reason, layer, applier.current);
  onProgress({ phase: "unpack", label: layer.digest, current: read, total, done: true });
}

/**
 * Unpacks `layers` (lowest first) into `targetDir`, which should be new and empty. On error
 * the directory is left as it is: the caller owns it and removes it.
 */
export async function applyLayers(
  layers: readonly LayerBlob[],
  targetDir: string,
  options: ApplyOptions = {},
): Promise<StagedRootfs> {
  const onProgress = options.onProgress ?? noProgress;
  const ownership = options.ownership ?? defaultOwnershipMode();
  await mkdir(targetDir, { recursive: true });
  const tree = new StagingTree(await realpath(targetDir), ownership);
  for (const layer of layers) {
    throwIfCancelled(options.signal);
    await applyLayer(tree, layer, onProgress, options.signal);
  }
  tree.finishDirectories();
  return { dir: tree.root, ownership, fixups: tree.fixups, warnings: tree.warnings };
}
