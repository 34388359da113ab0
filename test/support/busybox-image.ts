/**
 * A real, small OCI image for tests, built from the busybox-static .deb that the default
 * image's build already cached (so no network): two gzip layers and a config, pushed with
 * oci-push.ts. Everything is deterministic (fixed mtimes, gzip without timestamps), so the
 * manifest digest is stable and the rootfs is built once per cache.
 *
 * Layer 1: /bin/busybox + applet symlinks, /etc/passwd (root, nobody, app:1000), /etc/group,
 * /etc/os-release (ID=corral-test), /etc/remove-me and /opt/old/{a,b}.txt.
 * Layer 2: /home/app owned 1000:1000, a whiteout of /etc/remove-me, /opt/old made opaque
 * (only new.txt remains).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readDebFiles } from "../../src/images/debian/extract.js";
import { findDefaultImage } from "../../src/images/default-image.js";
import { cachePaths } from "../../src/paths/layout.js";
import { OCI_MANIFEST, pushImage } from "./oci-push.js";
import { compress, type TarEntry, tarBuffer } from "./tar-fixtures.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

export const BUSYBOX_APPLETS = [
  "sh", "ash", "ls", "cat", "echo", "id", "env", "pwd", "mkdir", "rm", "rmdir", "cp", "mv",
  "ln", "chmod", "chown", "touch", "sha256sum", "md5sum", "uname", "sleep", "hostname",
  "date", "head", "tail", "wc", "grep", "sed", "awk", "find", "stat", "test", "[", "true",
  "false", "printf", "tr", "cut", "sort", "uniq", "xargs", "readlink", "realpath", "basename",
  "dirname", "df", "du", "mount", "umount", "ps", "kill", "whoami", "tee", "seq", "yes",
  "dd", "vi", "less", "tar", "gzip", "gunzip", "su", "nproc", "free", "ip", "ifconfig", "ping",
]; // biome-ignore format: a list, not code

export const BUSYBOX_IMAGE_CONFIG = {
  env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=from-image"],
  workingDir: "/home/app",
  cmd: ["sh", "-c", "echo default-cmd; id -u"],
};

const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "app:x:1000:1000:app:/home/app:/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false",
  "",
].join("\n");
const GROUP = ["root:x:0:", "app:x:1000:", "nogroup:x:65534:", ""].join("\n");
const OS_RELEASE = 'ID=corral-test\nNAME="corral test image"\nPRETTY_NAME="corral test image"\n';

/** The cached busybox-static .deb of the default image build. */
export function busyboxDebPath(): string {
  const inputs = findDefaultImage()?.inputs.busybox as { sha256?: unknown } | undefined;
  const sha = typeof inputs?.sha256 === "string" ? inputs.sha256 : undefined;
  const path = sha === undefined ? undefined : cachePaths.deb(sha);
  if (path === undefined || !existsSync(path)) {
    throw new Error("busybox-static .deb not cached: run `corral setup` first");
  }
  return path;
}

async function readBusybox(): Promise<Buffer> {
  let binary: Buffer | undefined;
  await readDebFiles(
    busyboxDebPath(),
    (p) => p === "bin/busybox",
    (_p, data) => {
      binary = data;
    },
  );
  if (binary === undefined) throw new Error("bin/busybox not in the busybox-static .deb");
  return binary;
}

const dir = (name: string, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  type: "directory",
  ...extra,
});

async function layerOne(): Promise<Buffer> {
  const entries: TarEntry[] = [
    dir("bin/"),
    { name: "bin/busybox", data: await readBusybox(), mode: 0o755 },
    ...BUSYBOX_APPLETS.map((a) => ({
      name: `bin/${a}`,
      type: "symlink" as const,
      linkname: "busybox",
    })),
    dir("sbin/"),
    dir("usr/"),
    dir("usr/bin/"),
    dir("usr/sbin/"),
    dir("etc/"),
    { name: "etc/passwd", data: PASSWD },
    { name: "etc/group", data: GROUP },
    { name: "etc/os-release", data: OS_RELEASE },
    { name: "etc/remove-me", data: "layer 2 deletes this\n" },
    dir("home/"),
    dir("root/", { mode: 0o700 }),
    dir("tmp/", { mode: 0o1777 }),
    dir("opt/"),
    dir("opt/old/"),
    { name: "opt/old/a.txt", data: "a\n" },
    { name: "opt/old/b.txt", data: "b\n" },
    dir("proc/"),
    dir("sys/"),
    dir("dev/"),
    dir("run/"),
    dir("var/"),
  ];
  return tarBuffer(entries);
}

async function layerTwo(): Promise<Buffer> {
  return tarBuffer([
    dir("home/app/", { uid: 1000, gid: 1000, mode: 0o755 }),
    { name: "etc/.wh.remove-me" },
    dir("opt/old/"),
    { name: "opt/old/.wh..wh..opq" },
    { name: "opt/old/new.txt", data: "new\n" },
  ]);
}

const diffId = (tar: Buffer) => `sha256:${createHash("sha256").update(tar).digest("hex")}`;

let built: Promise<{ layers: Buffer[]; diffIds: string[] }> | undefined;

function buildLayers() {
  built ??= (async () => {
    const tars = [await layerOne(), await layerTwo()];
    return { layers: tars.map((t) => compress(t, "gzip")), diffIds: tars.map(diffId) };
  })();
  return built;
}

/** Pushes the image to `registryUrl` (`http://127.0.0.1:PORT`) as `repo:tag`. */
export async function pushBusyboxImage(
  registryUrl: string,
  repo: string,
  tag: string,
): Promise<{ reference: string; manifestDigest: string }> {
  const { layers, diffIds } = await buildLayers();
  const pushed = await pushImage(registryUrl, repo, tag, {
    manifestMediaType: OCI_MANIFEST,
    layers: layers.map((data) => ({ data, mediaType: GZIP })),
    config: {
      created: "2024-01-02T03:04:05Z",
      architecture: "amd64",
      os: "linux",
      config: {
        Env: BUSYBOX_IMAGE_CONFIG.env,
        WorkingDir: BUSYBOX_IMAGE_CONFIG.workingDir,
        Cmd: BUSYBOX_IMAGE_CONFIG.cmd,
      },
      rootfs: { type: "layers", diff_ids: diffIds },
    },
  });
  const host = new URL(registryUrl).host;
  return { reference: `${host}/${repo}:${tag}`, manifestDigest: pushed.digest };
}
