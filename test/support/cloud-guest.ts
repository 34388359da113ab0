/**
 * A real cloud-init guest for corral's tests: Debian 12 built with debootstrap (systemd,
 * cloud-init 22.4, the cloud kernel), as a qcow2 of a bare ext4 root filesystem (no partition
 * table: root=/dev/vda) plus the kernel and initrd from its /boot, to boot with -kernel/-initrd.
 *
 * Cached under `<cache>/test-guests/cloud-<key>/`, the key hashing every input (suite,
 * packages, files written into the tree, masked units, cmdline, builder version): a second
 * call reads guest.json and touches no network. A build happens in a `.tmp` sibling that is
 * renamed into place only when complete, and is removed (after unmounting anything
 * debootstrap left mounted in it) on failure; stale temp dirs of dead builders are swept.
 *
 * Reproducible, not bit-identical: debootstrap reads only the `bookworm` suite (which changes
 * at point releases), SOURCE_DATE_EPOCH is the archive's Release date (every file a maintainer
 * script creates is clamped to it), the ext4 UUID and hash seed derive from the key, the build's
 * logs and caches are removed, and guest.json records the InRelease hash and every installed
 * package version. Two builds from the same archive state gave a bit-identical kernel and
 * initrd and the same files (contents, modes, owners, mtimes); the ext4 still differs in inode
 * ctimes (the build's clock: utimes cannot set them) and in allocation order (mke2fs -d
 * follows the build tree's readdir order).
 *
 * Needs root (debootstrap, chroot, device nodes), debootstrap, mke2fs, qemu-img, dpkg-query.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import {
  chmod,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomicSync } from "../../src/base/atomic.js";
import { fetchRequired } from "../../src/images/debian/http.js";
import { debianMirror } from "../../src/images/debian/mirror.js";
import { parseRelease } from "../../src/images/debian/release.js";
import { DEBIAN_KEYRING } from "../../src/images/debian/signature.js";
import { cacheRoot } from "../../src/paths/layout.js";

export interface CloudGuest {
  /** qcow2 of an ext4 root filesystem (no partition table): attach as the first virtio disk. */
  disk: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  /** Installed packages: name -> version (dpkg-query). */
  packages: Record<string, string>;
  /** sha256 over the disk, kernel and initrd contents (`sha256:<hex>`). */
  digest: string;
  /** The cache entry (holds guest.json). */
  dir: string;
  /** Hash of the build inputs: the cache key. */
  key: string;
}

export interface CloudGuestOptions {
  onProgress?: (line: string) => void;
}

/** Bump when the build changes in a way the inputs below do not capture. */
const BUILDER_VERSION = 1;
const SUITE = "bookworm";
const VARIANT = "minbase";

/**
 * cloud-init's bookworm package hard-depends on isc-dhcp-client; debootstrap does not resolve
 * virtual packages, so python3-cryptography's python3-cffi-backend-api-* needs the real one.
 * No ifupdown: without it cloud-init renders networkd (systemd ships networkd in bookworm;
 * `ip` from iproute2 is what cloud-init's networkd renderer checks for), which needs neither
 * ifupdown-pre's `udevadm settle` nor dhclient blocking the boot. No openssh-server: the
 * host reaches the guest through corral's agent over vsock.
 */
export const CLOUD_GUEST_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "udev",
  "dbus",
  "cloud-init",
  "python3-cffi-backend",
  "linux-image-cloud-amd64",
  "netbase",
  "kmod",
  "iproute2",
  "e2fsprogs",
] as const;

/**
 * `quiet` matters most under TCG: every console byte goes through an emulated UART.
 * `fsck.mode=skip`: the image is made by mke2fs and each VM writes an overlay of it.
 */
export const CLOUD_GUEST_CMDLINE = [
  "root=/dev/vda",
  "rw",
  "console=ttyS0",
  "quiet",
  "fsck.mode=skip",
  "mitigations=off",
  "cryptomgr.notests",
].join(" ");

const CLOUD_CFG = `# corral test guest
# Only the NoCloud seed (a cidata volume) or nothing: never probe other clouds' metadata.
datasource_list: [ NoCloud, None ]
# The image's own locale: the default (en_US.UTF-8) would run locale-gen on every first boot.
locale: C.UTF-8
# No grub in this image (the kernel is booted directly): the module would probe for 1.6 s.
grub_dpkg:
  enabled: false
`;
// Known noise: without openssh the ssh module logs one "Failed generating key type" WARNING per
// key type; `ssh_genkeytypes: []` would silence it but fails cloud-init's schema (minItems 1),
// which logs "Invalid cloud-config provided" instead.

/** Files written into the tree (path -> content); part of the cache key. */
const FILES: Record<string, { content: string; mode: number }> = {
  "etc/cloud/cloud.cfg.d/90_corral.cfg": { content: CLOUD_CFG, mode: 0o644 },
  "etc/default/locale": { content: "LANG=C.UTF-8\n", mode: 0o644 },
  "etc/fstab": { content: "/dev/vda / ext4 rw,errors=remount-ro 0 0\n", mode: 0o644 },
  "etc/hostname": { content: "localhost\n", mode: 0o644 },
  "etc/hosts": {
    content: "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    mode: 0o644,
  },
  // Empty: each VM gets its own at first boot; none is baked into the image.
  "etc/machine-id": { content: "", mode: 0o444 },
  "etc/resolv.conf": { content: "", mode: 0o644 },
  // A small initrd (5.7 MB instead of 15 MB): the root disk is virtio-blk, ext4 is built in.
  "etc/initramfs-tools/conf.d/corral.conf": { content: "MODULES=list\n", mode: 0o644 },
  "etc/initramfs-tools/modules": { content: "virtio_pci\nvirtio_blk\n", mode: 0o644 },
};

/** Units that slow a TCG boot or would block it; masked (linked to /dev/null). */
const MASKED_UNITS = [
  // Nothing waits for "online": cloud-config/cloud-final only order after network-online.
  "systemd-networkd-wait-online.service",
  // With an empty machine-id every boot is a first boot: it would prompt on the console.
  "systemd-firstboot.service",
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "e2scrub_all.timer",
  "e2scrub_reap.service",
  "fstrim.timer",
  "man-db.timer",
  // -nodefaults: no VGA, so no use for a getty on tty1 (the serial getty stays).
  "getty@tty1.service",
  // Each is a modprobe at boot (1-5 s of TCG time, all at once); the drivers still load on
  // demand: /dev/loop-control and /dev/fuse are static nodes, dm and pstore are unused here.
  "modprobe@drm.service",
  "modprobe@dm_mod.service",
  "modprobe@loop.service",
  "modprobe@fuse.service",
  "modprobe@efi_pstore.service",
] as const;

/** Generators with nothing to generate here (each costs 150-250 ms of TCG time per boot). */
const MASKED_GENERATORS = [
  "systemd-cryptsetup-generator",
  "systemd-integritysetup-generator",
  "systemd-veritysetup-generator",
  "systemd-gpt-auto-generator",
  "systemd-hibernate-resume-generator",
  "systemd-system-update-generator",
  "systemd-debug-generator",
  "systemd-sysv-generator",
  "systemd-rc-local-generator",
] as const;

const ENABLED_UNITS = ["systemd-networkd.service"] as const;

/** Removed from the tree: archive state, caches and logs of the build (recorded in guest.json). */
const REMOVED = [
  "var/lib/apt/lists",
  "var/cache/apt/pkgcache.bin",
  "var/cache/apt/srcpkgcache.bin",
  "var/cache/apt/archives",
  "var/lib/dbus/machine-id",
  "var/log/bootstrap.log",
  // The only contents that differed between two builds from the same archive state.
  "var/log/dpkg.log",
  "var/log/alternatives.log",
  "var/cache/ldconfig/aux-cache",
  "etc/ssh/ssh_host_rsa_key",
  "etc/ssh/ssh_host_ecdsa_key",
  "etc/ssh/ssh_host_ed25519_key",
];

const EXTRA_BYTES = 768 * 1024 * 1024;
const MANIFEST = "guest.json";

interface FileInfo {
  name: string;
  sha256: string;
  bytes: number;
}

interface Manifest {
  builderVersion: number;
  key: string;
  suite: string;
  mirror: string;
  archive: { date: string; inReleaseSha256: string };
  sourceDateEpoch: number;
  debootstrap: string[];
  kernelRelease: string;
  cmdline: string;
  packages: Record<string, string>;
  files: { disk: FileInfo; kernel: FileInfo; initrd: FileInfo };
  ext4: { bytes: number; contentBytes: number };
  digest: string;
  buildSeconds: number;
}

function inputsKey(): string {
  const inputs = {
    builderVersion: BUILDER_VERSION,
    suite: SUITE,
    variant: VARIANT,
    packages: CLOUD_GUEST_PACKAGES,
    files: FILES,
    masked: MASKED_UNITS,
    maskedGenerators: MASKED_GENERATORS,
    enabled: ENABLED_UNITS,
    removed: REMOVED,
    cmdline: CLOUD_GUEST_CMDLINE,
    extraBytes: EXTRA_BYTES,
  };
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 16);
}

export function cloudGuestsRoot(): string {
  return join(cacheRoot(), "test-guests");
}

function toGuest(dir: string, m: Manifest): CloudGuest {
  return {
    disk: join(dir, m.files.disk.name),
    kernel: join(dir, m.files.kernel.name),
    initrd: join(dir, m.files.initrd.name),
    cmdline: m.cmdline,
    packages: m.packages,
    digest: m.digest,
    dir,
    key: m.key,
  };
}

async function readCached(dir: string): Promise<CloudGuest | undefined> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST), "utf8")) as Manifest;
  } catch {
    return undefined;
  }
  const guest = toGuest(dir, manifest);
  for (const path of [guest.disk, guest.kernel, guest.initrd]) {
    if (!existsSync(path)) return undefined;
  }
  return guest;
}

/** Builds the guest on first use (minutes: needs the Debian mirror), then returns it at once. */
export async function ensureCloudGuest(options: CloudGuestOptions = {}): Promise<CloudGuest> {
  const say = options.onProgress ?? (() => {});
  const key = inputsKey();
  const final = join(cloudGuestsRoot(), `cloud-${key}`);
  const cached = await readCached(final);
  if (cached !== undefined) return cached;
  if (existsSync(final)) {
    throw new Error(`${final} exists but is not a complete cloud guest: remove it and retry`);
  }
  if (process.getuid?.() !== 0) {
    throw new Error("building the cloud-init test guest needs root (debootstrap, chroot)");
  }
  await mkdir(cloudGuestsRoot(), { recursive: true });
  await sweepStaleBuilds();
  const tmp = join(cloudGuestsRoot(), `.cloud-${key}.${process.pid}.tmp`);
  await removeTree(tmp);
  await mkdir(tmp);
  try {
    const manifest = await build(key, tmp, say);
    writeFileAtomicSync(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      await rename(tmp, final);
    } catch (err) {
      // A concurrent builder won the rename: its guest is just as good.
      const other = await readCached(final);
      if (other === undefined) throw err;
      await removeTree(tmp);
      return other;
    }
    say(`cloud-guest: ready in ${manifest.buildSeconds.toFixed(0)} s at ${final}`);
    return toGuest(final, manifest);
  } catch (err) {
    await removeTree(tmp);
    throw err;
  }
}

async function build(key: string, tmp: string, say: (line: string) => void): Promise<Manifest> {
  const started = Date.now();
  const mirror = debianMirror();
  const tree = join(tmp, "root");

  say(`cloud-guest: reading ${mirror}/dists/${SUITE}/InRelease`);
  const inRelease = await fetchRequired(`${mirror}/dists/${SUITE}/InRelease`);
  const date = parseRelease(inRelease.toString("utf8")).date;
  const epochMs = date === undefined ? Number.NaN : Date.parse(date);
  if (!Number.isFinite(epochMs)) throw new Error(`no Date in ${SUITE}'s InRelease`);
  const epoch = Math.floor(epochMs / 1000);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SOURCE_DATE_EPOCH: String(epoch),
    LC_ALL: "C",
    LANGUAGE: "",
    LANG: "",
    DEBIAN_FRONTEND: "noninteractive",
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  };

  const debCache = join(cloudGuestsRoot(), "debootstrap-debs");
  await mkdir(debCache, { recursive: true });
  const debootstrapArgs = [
    `--variant=${VARIANT}`,
    "--arch=amd64",
    "--components=main",
    `--include=${CLOUD_GUEST_PACKAGES.join(",")}`,
    ...(existsSync(DEBIAN_KEYRING) ? [`--keyring=${DEBIAN_KEYRING}`] : []),
    SUITE,
    tree,
    mirror,
  ];
  say(`cloud-guest: debootstrap ${SUITE} (${CLOUD_GUEST_PACKAGES.length} packages + deps)`);
  const phases = new Set<string>();
  await run("debootstrap", [`--cache-dir=${debCache}`, ...debootstrapArgs], env, (line) => {
    // One line per phase, not per package: "Retrieving", "Validating", "Extracting",
    // "Unpacking required/the base ...", "Configuring required/the base ...", ...
    const m = /^I: (\S+)(?: (\S+))?/.exec(line);
    if (m === null) return;
    const perPackage = m[1] === "Unpacking" || m[1] === "Configuring";
    const phase = perPackage ? `${m[1]} ${m[2]}` : m[1]!;
    if (perPackage && m[2] !== "required" && m[2] !== "the") return;
    if (phases.has(phase)) return;
    phases.add(phase);
    say(`cloud-guest: debootstrap: ${line.slice(3)}`);
  }).catch(async (err: unknown) => {
    const log = await readFile(join(tree, "debootstrap", "debootstrap.log"), "utf8").catch(
      () => "",
    );
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${log.slice(-4000)}`, {
      cause: err,
    });
  });

  const treeRelease = await readFile(
    join(tree, "var/lib/apt/lists", `${listPrefix(mirror)}_dists_${SUITE}_InRelease`),
  ).catch(() => undefined);
  const inReleaseSha256 = sha256(inRelease);
  if (treeRelease !== undefined && sha256(treeRelease) !== inReleaseSha256) {
    throw new Error(`the ${SUITE} archive changed during the build: retry`);
  }

  say("cloud-guest: configuring (cloud-init NoCloud, units, machine-id)");
  await configure(tree, env);
  const packages = await installedPackages(tree);
  const kernelRelease = await findKernelRelease(tree);
  for (const path of REMOVED) await rm(join(tree, path), { recursive: true, force: true });
  await mkdir(join(tree, "var/lib/apt/lists/partial"), { recursive: true });
  await mkdir(join(tree, "var/cache/apt/archives/partial"), { recursive: true });

  say(`cloud-guest: extracting kernel ${kernelRelease}`);
  const kernelName = "vmlinuz";
  const initrdName = "initrd.img";
  await copyOut(join(tree, "boot", `vmlinuz-${kernelRelease}`), join(tmp, kernelName));
  await copyOut(join(tree, "boot", `initrd.img-${kernelRelease}`), join(tmp, initrdName));

  await clampMtimes(tree, epoch);
  const contentBytes = await treeBytes(tree);
  const mib = 1024 * 1024;
  const ext4Bytes = Math.ceil((contentBytes * 1.2 + EXTRA_BYTES) / (64 * mib)) * 64 * mib;
  const ext4 = join(tmp, "root.ext4");
  const uuid = uuidFrom(key);
  say(
    `cloud-guest: mke2fs ${Math.round(ext4Bytes / mib)} MiB (${Math.round(contentBytes / mib)} MiB of files)`,
  );
  await run(
    "mke2fs",
    [
      "-q",
      "-F",
      "-t",
      "ext4",
      "-b",
      "4096",
      "-m",
      "1",
      "-L",
      "cloud-root",
      "-U",
      uuid,
      "-E",
      `hash_seed=${uuid},root_owner=0:0`,
      "-d",
      tree,
      ext4,
      `${ext4Bytes / 1024}k`,
    ],
    { ...env, E2FSPROGS_FAKE_TIME: String(epoch) },
  );
  await removeTree(tree);

  say("cloud-guest: qemu-img convert -> qcow2");
  const diskName = "disk.qcow2";
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", ext4, join(tmp, diskName)], env);
  await rm(ext4, { force: true });

  say("cloud-guest: hashing");
  const files = {
    disk: await fileInfo(tmp, diskName),
    kernel: await fileInfo(tmp, kernelName),
    initrd: await fileInfo(tmp, initrdName),
  };
  const digest = `sha256:${createHash("sha256")
    .update(`${files.disk.sha256} ${files.kernel.sha256} ${files.initrd.sha256}`)
    .digest("hex")}`;
  return {
    builderVersion: BUILDER_VERSION,
    key,
    suite: SUITE,
    mirror,
    archive: { date: date ?? "", inReleaseSha256 },
    sourceDateEpoch: epoch,
    debootstrap: debootstrapArgs.map((a) => (a === tree ? "<tree>" : a)),
    kernelRelease,
    cmdline: CLOUD_GUEST_CMDLINE,
    packages,
    files,
    ext4: { bytes: ext4Bytes, contentBytes },
    digest,
    buildSeconds: (Date.now() - started) / 1000,
  };
}

/** apt's list file prefix for a mirror URI: "http://deb.debian.org/debian" -> "deb.debian.org_debian". */
function listPrefix(mirror: string): string {
  return mirror.replace(/^[a-z]+:\/\//, "").replaceAll("/", "_");
}

async function configure(tree: string, env: NodeJS.ProcessEnv): Promise<void> {
  for (const [path, { content, mode }] of Object.entries(FILES)) {
    const target = join(tree, path);
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true });
    await writeFile(target, content, { mode });
    await chmod(target, mode);
  }
  for (const unit of ENABLED_UNITS) {
    await run("chroot", [tree, "systemctl", "enable", unit], env);
  }
  const system = join(tree, "etc/systemd/system");
  for (const unit of MASKED_UNITS) {
    // Drop any enablement link first (wants/ directories), then mask.
    for (const entry of await readdir(system, { withFileTypes: true })) {
      if (entry.isDirectory()) await rm(join(system, entry.name, unit), { force: true });
    }
    await rm(join(system, unit), { force: true });
    await symlink("/dev/null", join(system, unit));
  }
  const generators = join(tree, "etc/systemd/system-generators");
  await mkdir(generators, { recursive: true });
  for (const name of MASKED_GENERATORS) {
    await rm(join(generators, name), { force: true });
    await symlink("/dev/null", join(generators, name));
  }
  // The initrd debootstrap made has MODULES=most (15 MB): rebuild it with our list.
  await run("chroot", [tree, "update-initramfs", "-u", "-k", "all"], env);
}

async function installedPackages(tree: string): Promise<Record<string, string>> {
  const out = await run(
    "dpkg-query",
    [
      `--admindir=${join(tree, "var/lib/dpkg")}`,
      "-W",
      "-f",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not JS
      "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n",
    ],
    process.env,
  );
  const packages: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const [name, version, status] = line.split("\t");
    if (name === undefined || version === undefined || name === "") continue;
    if (status?.trim() !== "ii")
      throw new Error(`package ${name} is not installed cleanly (${status})`);
    packages[name] = version;
  }
  return Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function findKernelRelease(tree: string): Promise<string> {
  const names = (await readdir(join(tree, "boot"))).filter((n) => n.startsWith("vmlinuz-"));
  if (names.length !== 1)
    throw new Error(`expected one kernel in /boot, found ${names.join(", ")}`);
  return names[0]!.slice("vmlinuz-".length);
}

async function copyOut(from: string, to: string): Promise<void> {
  await writeFile(to, await readFile(from));
}

/** Files the build created (after the archive's date) get the archive's date as mtime. */
async function clampMtimes(root: string, epoch: number): Promise<void> {
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      const st = await lstat(path);
      if (st.mtimeMs / 1000 > epoch) await lutimes(path, epoch, epoch);
    }
  };
  await walk(root);
  const st = await lstat(root);
  if (st.mtimeMs / 1000 > epoch) await lutimes(root, epoch, epoch);
}

async function treeBytes(root: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const st = await lstat(path);
      total += Math.max(st.blocks * 512, 4096);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk(root);
  return total;
}

function uuidFrom(key: string): string {
  const h = createHash("sha256").update(`cloud-guest ${key}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

async function fileInfo(dir: string, name: string): Promise<FileInfo> {
  const path = join(dir, name);
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return { name, sha256: hash.digest("hex"), bytes: (await stat(path)).size };
}

/** Runs a command (argv, no shell); resolves with stdout, rejects with the output's tail. */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine?: (line: string) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let tail = "";
    let partial = "";
    const keep = (chunk: string) => {
      tail = (tail + chunk).slice(-8192);
    };
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    const lines = (chunk: string) => {
      keep(chunk);
      if (onLine === undefined) return;
      partial += chunk;
      const complete = partial.split("\n");
      partial = complete.pop() ?? "";
      for (const line of complete) onLine(line);
    };
    child.stdout.on("data", (chunk: string) => {
      if (stdout.length < 16 * 1024 * 1024) stdout += chunk;
      lines(chunk);
    });
    child.stderr.on("data", lines);
    child.on("error", (err) => reject(new Error(`cannot run ${command}: ${err.message}`)));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve(stdout);
      reject(new Error(`${command} failed (${signal ?? `exit ${code}`}):\n${tail.trim()}`));
    });
  });
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_m, oct: string) =>
    String.fromCharCode(Number.parseInt(oct, 8)),
  );
}

/** Removes a build tree, first unmounting what an interrupted debootstrap left mounted in it. */
async function removeTree(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/self/mounts", "utf8").catch(() => ""))
    .split("\n")
    .map((line) => unescapeMount(line.split(" ")[1] ?? ""))
    .filter((mountPoint) => mountPoint.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mounts) {
    await run("umount", ["-l", mountPoint], process.env).catch(() => {});
  }
  const left = (await readFile("/proc/self/mounts", "utf8").catch(() => ""))
    .split("\n")
    .some((line) => unescapeMount(line.split(" ")[1] ?? "").startsWith(`${dir}/`));
  if (left) throw new Error(`cannot remove ${dir}: something is still mounted below it`);
  await rm(dir, { recursive: true, force: true });
}

/** Temp dirs of builders that died (their pid is gone) are removed. */
async function sweepStaleBuilds(): Promise<void> {
  for (const name of await readdir(cloudGuestsRoot())) {
    const m = /^\.cloud-[0-9a-f]+\.(\d+)\.tmp$/.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && existsSync(`/proc/${pid}`)) continue;
    await removeTree(join(cloudGuestsRoot(), name));
  }
}
