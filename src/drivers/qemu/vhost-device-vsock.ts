/**
 * vhost-device-vsock: QEMU's sidecar for the hybrid-vsock channel. Debian 12 doesn't package
 * it; the newer suites' .deb needs only libc6 >= 2.34 and libgcc-s1, so it runs here. It is
 * fetched (SHA-256 verified) into corral's tool cache rather than installed system-wide.
 */
import { execFile } from "node:child_process";
import { accessSync, constants, readdirSync } from "node:fs";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { commitTemp, tempSibling } from "../../base/atomic.js";
import { noProgress, type ProgressListener } from "../../base/progress.js";
import { CorralError, isCorralError } from "../../errors.js";
import { which } from "../../host/which.js";
import { extractDeb } from "../../images/debian/extract.js";
import { type FetchedDeb, fetchDeb } from "../../images/debian/fetch-deb.js";
import { compareDebianVersions } from "../../images/debian/version.js";
import { cachePaths } from "../../paths/layout.js";

const run = promisify(execFile);

export const VHOST_DEVICE_VSOCK = "vhost-device-vsock";

/**
 * Debian 13 was meant to ship it but the package only reached unstable before the freeze,
 * so unstable is the fallback (measured: trixie/main has no vhost-device-vsock).
 */
export const VHOST_DEVICE_VSOCK_SUITES = ["trixie", "sid"] as const;

const DEB_PATH = "usr/bin/vhost-device-vsock";

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function cachedVersions(): string[] {
  try {
    return readdirSync(join(cachePaths.tools(), VHOST_DEVICE_VSOCK))
      .filter((v) => !v.startsWith("."))
      .filter((v) => executable(join(cachePaths.tool(VHOST_DEVICE_VSOCK, v), VHOST_DEVICE_VSOCK)))
      .sort((a, b) => compareDebianVersions(b, a));
  } catch {
    return [];
  }
}

/** The sidecar on PATH, else the newest one in corral's tool cache; never touches the network. */
export function findVhostDeviceVsock(): string | undefined {
  const onPath = which(VHOST_DEVICE_VSOCK);
  if (onPath !== undefined) return onPath;
  const newest = cachedVersions()[0];
  return newest === undefined
    ? undefined
    : join(cachePaths.tool(VHOST_DEVICE_VSOCK, newest), VHOST_DEVICE_VSOCK);
}

async function checkRuns(path: string): Promise<void> {
  try {
    await run(path, ["--help"], { timeout: 10_000 });
  } catch (err) {
    throw new CorralError("SETUP", `${path} does not run on this host`, {
      cause: err,
      details: { stderr: (err as { stderr?: string }).stderr ?? "" },
      hint: "it needs glibc >= 2.34 and libgcc-s1; install vhost-device-vsock some other way and put it on PATH",
    });
  }
}

async function versionOf(path: string): Promise<string> {
  try {
    const { stdout } = await run(path, ["--version"], { timeout: 10_000 });
    return /(\d+\.\d+[\w.+~-]*)/.exec(stdout)?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function fetchFromArchive(
  onProgress: ProgressListener,
  refresh: boolean | undefined,
): Promise<FetchedDeb> {
  const missing: string[] = [];
  for (const suite of VHOST_DEVICE_VSOCK_SUITES) {
    try {
      return await fetchDeb({
        suite,
        name: VHOST_DEVICE_VSOCK,
        onProgress,
        ...(refresh === undefined ? {} : { refresh }),
      });
    } catch (err) {
      if (!isCorralError(err, "IMAGE_NOT_FOUND")) throw err;
      missing.push(suite);
    }
  }
  throw new CorralError(
    "SETUP",
    `no ${VHOST_DEVICE_VSOCK} package in Debian ${missing.join(" or ")}`,
    { hint: `install ${VHOST_DEVICE_VSOCK} (rust-vmm) yourself and put it on PATH` },
  );
}

export interface EnsureOptions {
  onProgress?: ProgressListener;
  /** Ignore what is installed and fetch the archive's current package. */
  refresh?: boolean;
}

/**
 * Returns a working vhost-device-vsock: the one already found (no network), or the Debian
 * package's binary unpacked into tools/vhost-device-vsock/<version>/ atomically.
 */
export async function ensureVhostDeviceVsock(
  opts: EnsureOptions = {},
): Promise<{ path: string; version: string }> {
  const onProgress = opts.onProgress ?? noProgress;
  if (opts.refresh !== true) {
    const onPath = which(VHOST_DEVICE_VSOCK);
    if (onPath !== undefined) return { path: onPath, version: await versionOf(onPath) };
    const newest = cachedVersions()[0];
    if (newest !== undefined) {
      return {
        path: join(cachePaths.tool(VHOST_DEVICE_VSOCK, newest), VHOST_DEVICE_VSOCK),
        version: newest,
      };
    }
  }
  const deb = await fetchFromArchive(onProgress, opts.refresh);
  // The Debian version without its epoch names the directory ("0.3.0-2").
  const version = deb.version.replace(/^\d+:/, "");
  const dir = cachePaths.tool(VHOST_DEVICE_VSOCK, version);
  const binary = join(dir, VHOST_DEVICE_VSOCK);
  if (await stat(binary).catch(() => undefined)) {
    await checkRuns(binary);
    return { path: binary, version };
  }
  onProgress({ phase: "extract", label: VHOST_DEVICE_VSOCK });
  await mkdir(join(dir, ".."), { recursive: true });
  const tmp = tempSibling(dir);
  try {
    await extractDeb(deb.path, tmp, (path) => path === DEB_PATH);
    await rename(join(tmp, DEB_PATH), join(tmp, VHOST_DEVICE_VSOCK));
    await rm(join(tmp, "usr"), { recursive: true, force: true });
    await checkRuns(join(tmp, VHOST_DEVICE_VSOCK));
    const source = {
      package: deb.name,
      version: deb.version,
      sha256: deb.sha256,
      filename: deb.filename,
    };
    await writeFile(join(tmp, "source.json"), `${JSON.stringify(source, null, 2)}\n`);
    await commitTemp(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    // A concurrent setup may have installed the same version first.
    if (executable(binary)) return { path: binary, version };
    throw err;
  }
  onProgress({ phase: "extract", label: VHOST_DEVICE_VSOCK, done: true });
  return { path: binary, version };
}
