import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../../base/atomic.js";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError } from "../../errors.js";
import { cachePaths } from "../../paths/layout.js";
import { type Compression, decompressBuffer } from "./decompress.js";
import { downloadVerified, fetchOptional, type RetryOptions } from "./http.js";
import { debianMirror } from "./mirror.js";
import { type DebPackage, PackageIndex, parsePackages } from "./packages.js";
import { parseRelease, type Release } from "./release.js";
import { gpgvVerify, signatureVerifier } from "./signature.js";

/** How long a fetched index is trusted before the next resolve re-fetches it. */
export const INDEX_MAX_AGE_MS = 24 * 60 * 60 * 1000;

const COMPONENT_INDEX = "main/binary-amd64/Packages";

const metaSchema = z.object({
  mirror: z.string(),
  suite: z.string(),
  fetchedAt: z.string(),
  signatureVerified: z.boolean(),
  packagesSha256: z.string(),
});
export type IndexMeta = z.infer<typeof metaSchema>;

export interface IndexOptions {
  suite: string;
  /** Re-fetch even when the cached index is fresh. */
  refresh?: boolean;
  onProgress?: ProgressListener;
  /** Defaults to debianMirror(). */
  mirror?: string;
  retry?: RetryOptions;
}

export interface LoadedIndex {
  mirror: string;
  index: PackageIndex;
  meta: IndexMeta;
}

function suiteDir(suite: string): string {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(suite)) {
    throw new CorralError(
      "INVALID_ARGUMENT",
      `invalid Debian suite name: ${JSON.stringify(suite)}`,
    );
  }
  return join(cachePaths.indexes(), suite);
}

async function readMeta(dir: string): Promise<IndexMeta | undefined> {
  try {
    return metaSchema.parse(JSON.parse(await readFile(join(dir, "meta.json"), "utf8")));
  } catch {
    return undefined;
  }
}

async function loadPackagesJson(dir: string, sha256: string): Promise<DebPackage[] | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, `packages-${sha256}.json`), "utf8")) as DebPackage[];
  } catch {
    return undefined;
  }
}

/** The cached index's metadata, without touching the network (for `doctor`). */
export async function cachedIndexMeta(suite: string): Promise<IndexMeta | undefined> {
  return readMeta(suiteDir(suite));
}

async function fetchRelease(
  mirror: string,
  suite: string,
  dir: string,
  retry: RetryOptions | undefined,
): Promise<{ release: Release; signatureVerified: boolean }> {
  const base = `${mirror}/dists/${suite}`;
  const verifier = signatureVerifier();
  const inRelease = await fetchOptional(`${base}/InRelease`, retry);
  const scratch = await mkdtemp(join(dir, ".sig-"));
  try {
    if (inRelease !== undefined) {
      let signatureVerified = false;
      if (verifier !== undefined) {
        const file = join(scratch, "InRelease");
        await writeFile(file, inRelease);
        const result = await gpgvVerify(verifier, [file]);
        if (!result.ok) throw badSignature(`${base}/InRelease`, result.output);
        signatureVerified = true;
      }
      return { release: parseRelease(inRelease.toString("utf8")), signatureVerified };
    }
    const release = await fetchOptional(`${base}/Release`, retry);
    if (release === undefined) {
      throw new CorralError("DOWNLOAD", `${base}/InRelease and Release not found`, {
        hint: `check the suite name (${suite}) and CORRAL_DEBIAN_MIRROR`,
      });
    }
    let signatureVerified = false;
    const sig =
      verifier === undefined ? undefined : await fetchOptional(`${base}/Release.gpg`, retry);
    if (verifier !== undefined && sig !== undefined) {
      await writeFile(join(scratch, "Release"), release);
      await writeFile(join(scratch, "Release.gpg"), sig);
      const result = await gpgvVerify(verifier, [
        join(scratch, "Release.gpg"),
        join(scratch, "Release"),
      ]);
      if (!result.ok) throw badSignature(`${base}/Release`, result.output);
      signatureVerified = true;
    }
    return { release: parseRelease(release.toString("utf8")), signatureVerified };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function badSignature(url: string, output: string): CorralError {
  return new CorralError("CHECKSUM_MISMATCH", `the OpenPGP signature of ${url} does not verify`, {
    details: { gpgv: output.trim() },
    hint: "the mirror may be tampered with or out of date; try another CORRAL_DEBIAN_MIRROR",
  });
}

async function removeStale(dir: string, keep: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name.startsWith("packages-") && name !== keep) await rm(join(dir, name), { force: true });
  }
}

/**
 * The verified Packages index of `<suite>/main/binary-amd64`. Served from the cache when it
 * is younger than INDEX_MAX_AGE_MS and came from the same mirror; otherwise Release is fetched
 * (and its signature checked when gpgv and the keyring exist), and Packages.xz (or .gz) is
 * downloaded, checked against Release's SHA-256 and cached under that hash.
 */
export async function loadIndex(opts: IndexOptions): Promise<LoadedIndex> {
  const mirror = (opts.mirror ?? debianMirror()).replace(/\/+$/, "");
  const onProgress = opts.onProgress ?? noProgress;
  const dir = suiteDir(opts.suite);
  await mkdir(dir, { recursive: true });

  const meta = await readMeta(dir);
  if (
    opts.refresh !== true &&
    meta !== undefined &&
    meta.mirror === mirror &&
    Date.now() - Date.parse(meta.fetchedAt) < INDEX_MAX_AGE_MS
  ) {
    const packages = await loadPackagesJson(dir, meta.packagesSha256);
    if (packages !== undefined) {
      return { mirror, meta, index: new PackageIndex(opts.suite, packages) };
    }
  }

  const label = `${opts.suite} index`;
  onProgress({ phase: "index", label });
  const { release, signatureVerified } = await fetchRelease(mirror, opts.suite, dir, opts.retry);
  let chosen: { path: string; kind: Compression } | undefined;
  for (const [suffix, kind] of [
    [".xz", "xz"],
    [".gz", "gz"],
  ] as const) {
    if (release.files.has(`${COMPONENT_INDEX}${suffix}`)) {
      chosen = { path: `${COMPONENT_INDEX}${suffix}`, kind };
      break;
    }
  }
  const entry = chosen === undefined ? undefined : release.files.get(chosen.path);
  if (chosen === undefined || entry === undefined) {
    throw new CorralError(
      "DOWNLOAD",
      `Release of ${opts.suite} lists no ${COMPONENT_INDEX}.xz/.gz`,
    );
  }

  let packages = await loadPackagesJson(dir, entry.sha256);
  if (packages === undefined) {
    const compressed = join(dir, `Packages-${entry.sha256}.${chosen.kind}`);
    await downloadVerified({
      url: `${mirror}/dists/${opts.suite}/${chosen.path}`,
      dest: compressed,
      sha256: entry.sha256,
      size: entry.size,
      label,
      onProgress,
      ...(opts.retry === undefined ? {} : { retry: opts.retry }),
    });
    try {
      const text = (await decompressBuffer(chosen.kind, await readFile(compressed))).toString(
        "utf8",
      );
      packages = parsePackages(text);
    } finally {
      await rm(compressed, { force: true });
    }
    if (packages.length === 0) {
      throw new CorralError("DOWNLOAD", `the Packages index of ${opts.suite} has no packages`);
    }
    writeFileAtomicSync(join(dir, `packages-${entry.sha256}.json`), JSON.stringify(packages));
  }
  await removeStale(dir, `packages-${entry.sha256}.json`);
  const fresh: IndexMeta = {
    mirror,
    suite: opts.suite,
    fetchedAt: new Date().toISOString(),
    signatureVerified,
    packagesSha256: entry.sha256,
  };
  writeFileAtomicSync(join(dir, "meta.json"), `${JSON.stringify(fresh, null, 2)}\n`);
  onProgress({ phase: "index", label, done: true });
  return { mirror, meta: fresh, index: new PackageIndex(opts.suite, packages) };
}
