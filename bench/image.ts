/**
 * Image benchmark, from one run on the same image in a local docker-registry:
 *   corral: pullImage (download + unpack + ext4, fresh cache each run), vs
 *   peers:  skopeo copy + umoci unpack + mke2fs -d (same ext4 size), fresh dirs each run;
 * then the time of createOverlay on a 1 GiB and a 20 GiB sparse raw base.
 * Interleaved runs, medians; last line `ratio: corral/peers`.
 *
 *   npm run bench:image [-- --runs 5]
 *
 * The image is generated in memory from a seeded PRNG (same bytes, same digest every run):
 * 3 gzip layers, 4045 tar entries, ~29 MiB of incompressible data, symlinks, hardlinks, a
 * whiteout, an opaque directory.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createOverlay } from "../src/drivers/qemu/disks.js";
import { requireTool } from "../src/host/tools.js";
import { pullImage } from "../src/images/oci-store.js";
import { OCI_MANIFEST, pushImage, sha256 } from "../test/support/oci-push.js";
import { startRegistry, type TestRegistry } from "../test/support/registry.js";
import { type TarEntry, tarBuffer } from "../test/support/tar-fixtures.js";
import { median, ms } from "./stats.js";

const runsArg = process.argv.indexOf("--runs");
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs takes a positive integer");
const OVERLAY_RUNS = 5;
const KiB = 1024;
const MiB = 1024 * KiB;
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

const skopeo = requireTool("skopeo");
const umoci = requireTool("umoci");
const mke2fs = requireTool("mke2fs");
const qemuImg = requireTool("qemu-img");

// ---------------------------------------------------------------- the image (deterministic)

/** mulberry32: a small seeded PRNG, so the image (and its digest) is the same every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  /** Incompressible bytes (stands in for binaries, shared libraries, media). */
  const bytes = (n: number) => {
    const words = new Uint32Array(Math.ceil(n / 4));
    for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
    return Buffer.from(words.buffer, 0, n);
  };
  const VOCAB = Array.from({ length: 400 }, (_, i) =>
    Array.from(
      { length: 2 + (i % 9) },
      (_, j) => "etaoinshrdlucmfwypvbgkjqxz"[(i * 7 + j * 13) % 26],
    ).join(""),
  );
  /** Text that compresses like source code and docs (~3-4x with gzip). */
  const text = (n: number) => {
    const parts: string[] = [];
    let len = 0;
    while (len < n) {
      const word = VOCAB[int(0, VOCAB.length - 1)]!;
      const sep = int(0, 11) === 0 ? "\n" : " ";
      parts.push(word, sep);
      len += word.length + 1;
    }
    return parts.join("").slice(0, n);
  };
  return { int, bytes, text };
}

const dir = (name: string, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  type: "directory",
  ...extra,
});

interface Layers {
  tars: Buffer[];
  entries: number;
  randomBytes: number;
  textBytes: number;
}

function buildLayerEntries(): { layers: TarEntry[][]; randomBytes: number; textBytes: number } {
  const r = prng(0xc0441);
  let randomBytes = 0;
  let textBytes = 0;
  const bin = (n: number) => {
    randomBytes += n;
    return r.bytes(n);
  };
  const txt = (n: number) => {
    textBytes += n;
    return r.text(n);
  };

  // Layer 1: a small "distro": merged /usr, 50 packages of docs + data, shared libraries and
  // executables (incompressible), library symlinks, a hardlink, config in /etc.
  const base: TarEntry[] = [
    dir("usr/"),
    dir("usr/bin/"),
    dir("usr/lib/"),
    dir("usr/lib/x86_64-linux-gnu/"),
    dir("usr/share/"),
    dir("usr/share/doc/"),
    { name: "bin", type: "symlink", linkname: "usr/bin" },
    { name: "lib", type: "symlink", linkname: "usr/lib" },
    dir("etc/"),
    { name: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n" },
    { name: "etc/group", data: "root:x:0:\napp:x:1000:\n" },
    { name: "etc/os-release", data: 'ID=corral-bench\nNAME="corral bench image"\n' },
    { name: "etc/obsolete.conf", data: "layer 2 deletes this\n" },
    dir("root/", { mode: 0o700 }),
    dir("tmp/", { mode: 0o1777 }),
    dir("var/"),
    dir("var/lib/"),
    dir("home/"),
  ];
  for (let p = 0; p < 50; p++) {
    const pkg = `pkg${p}`;
    base.push(dir(`usr/share/doc/${pkg}/`), dir(`usr/share/${pkg}/`));
    base.push({ name: `usr/share/doc/${pkg}/copyright`, data: txt(r.int(1 * KiB, 4 * KiB)) });
    base.push({ name: `usr/share/doc/${pkg}/changelog`, data: txt(r.int(2 * KiB, 16 * KiB)) });
    base.push({ name: `etc/${pkg}.conf`, data: txt(r.int(200, 2 * KiB)) });
    const files = r.int(25, 45);
    for (let f = 0; f < files; f++) {
      base.push({ name: `usr/share/${pkg}/data${f}.txt`, data: txt(r.int(300, 6 * KiB)) });
    }
    const lib = `usr/lib/x86_64-linux-gnu/lib${pkg}.so`;
    base.push({ name: `${lib}.1.0.0`, data: bin(r.int(100 * KiB, 500 * KiB)) });
    base.push({ name: `${lib}.1`, type: "symlink", linkname: `lib${pkg}.so.1.0.0` });
    base.push({ name: lib, type: "symlink", linkname: `lib${pkg}.so.1` });
    base.push({ name: `usr/bin/${pkg}`, data: bin(r.int(20 * KiB, 150 * KiB)), mode: 0o755 });
  }
  base.push({ name: "usr/bin/pkg0-alias", type: "link", linkname: "usr/bin/pkg0" });

  // Layer 2: runtime dependencies (node_modules-like: many small files, a few native
  // modules), a whiteout of a layer-1 file, an opaque directory replacing a layer-1 one.
  const deps: TarEntry[] = [
    { name: "etc/.wh.obsolete.conf" },
    dir("usr/share/doc/pkg0/"),
    { name: "usr/share/doc/pkg0/.wh..wh..opq" },
    { name: "usr/share/doc/pkg0/README", data: "replaced by layer 2\n" },
    dir("app/", { uid: 1000, gid: 1000 }),
    dir("app/node_modules/"),
  ];
  for (let m = 0; m < 90; m++) {
    const mod = `app/node_modules/mod${m}`;
    deps.push(dir(`${mod}/`), dir(`${mod}/lib/`));
    deps.push({ name: `${mod}/package.json`, data: `{"name":"mod${m}","version":"1.${m}.0"}\n` });
    const files = r.int(10, 20);
    for (let f = 0; f < files; f++) {
      deps.push({ name: `${mod}/lib/f${f}.js`, data: txt(r.int(200, 5 * KiB)) });
    }
    if (m % 10 === 0)
      deps.push({ name: `${mod}/binding.node`, data: bin(r.int(300 * KiB, 700 * KiB)) });
  }
  deps.push({ name: "app/node_modules/.bin/", type: "directory" });
  deps.push({ name: "app/node_modules/.bin/mod1", type: "symlink", linkname: "../mod1/lib/f0.js" });

  // Layer 3: the application: bundles, incompressible assets, a whiteout of a dependency.
  const app: TarEntry[] = [
    { name: "app/node_modules/.wh.mod89" },
    dir("app/dist/"),
    dir("app/assets/"),
    { name: "app/config.json", data: '{"port":8080}\n', uid: 1000, gid: 1000 },
  ];
  for (let f = 0; f < 150; f++) {
    app.push({ name: `app/dist/chunk${f}.js`, data: txt(r.int(1 * KiB, 20 * KiB)) });
  }
  for (let a = 0; a < 20; a++) {
    app.push({ name: `app/assets/img${a}.webp`, data: bin(r.int(100 * KiB, 400 * KiB)) });
  }
  return { layers: [base, deps, app], randomBytes, textBytes };
}

async function buildImage(): Promise<Layers> {
  const { layers, randomBytes, textBytes } = buildLayerEntries();
  const tars = await Promise.all(layers.map((entries) => tarBuffer(entries)));
  return { tars, entries: layers.reduce((n, l) => n + l.length, 0), randomBytes, textBytes };
}

// ---------------------------------------------------------------- the contenders

interface Timed {
  total: number;
  phases: Record<string, number>;
}

/** corral, in process: CORRAL_CACHE_DIR is read at call time, so each run gets a fresh cache. */
async function corralPull(ref: string, cacheDir: string): Promise<Timed & { sizeBytes: number }> {
  process.env.CORRAL_CACHE_DIR = cacheDir;
  const marks: Record<string, number> = {};
  const start = performance.now();
  const image = await pullImage(ref, {
    onProgress: (e) => {
      const now = performance.now();
      if (e.phase === "pull" && e.done === true) marks.downloaded = now;
      if (e.phase === "unpack" && e.done === true) marks.unpacked = now;
      if (e.phase === "ext4" && e.current === 0) marks.measure = now;
      if (e.phase === "ext4" && e.current === 1) marks.mke2fs = now;
      if (e.phase === "ext4" && e.current === 2) marks.debugfs = now;
      if (e.phase === "ext4" && e.done === true) marks.e2fsck = now;
    },
  });
  const total = performance.now() - start;
  if (!existsSync(image.rootfs)) throw new Error(`pullImage returned no rootfs: ${image.rootfs}`);
  if (image.cached) throw new Error("pullImage reported a cached pull in a fresh cache");
  const order = ["downloaded", "unpacked", "measure", "mke2fs", "debugfs", "e2fsck"];
  const phases: Record<string, number> = {};
  let prev = start;
  for (const name of order) {
    const t = marks[name];
    if (t === undefined) continue;
    phases[name === "downloaded" ? "download" : name === "unpacked" ? "unpack" : name] = t - prev;
    prev = t;
  }
  // Removing the staging tree, then image.json and refs.json. Phase medians are taken one by
  // one, so they need not add up to the median total.
  phases["rm+meta"] = start + total - prev;
  return { total, phases, sizeBytes: image.sizeBytes };
}

function run(tool: string, args: string[]): number {
  const start = performance.now();
  const r = spawnSync(tool, args, { stdio: ["ignore", "ignore", "pipe"] });
  const elapsed = performance.now() - start;
  if (r.status !== 0) {
    throw new Error(`${tool} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}`);
  }
  return elapsed;
}

/** skopeo copy + umoci unpack + mke2fs -d, at the size corral chose. */
function peers(ref: string, work: string, sizeBytes: number): Timed {
  const layout = join(work, "oci");
  const bundle = join(work, "bundle");
  const download = run(skopeo, [
    "copy",
    "-q",
    "--src-tls-verify=false",
    `docker://${ref}`,
    `oci:${layout}:bench`,
  ]);
  // We run as root; --rootless only when not.
  const rootless = process.getuid?.() === 0 ? [] : ["--rootless"];
  const unpack = run(umoci, ["unpack", ...rootless, "--image", `${layout}:bench`, bundle]);
  const ext4 = run(mke2fs, [
    "-q",
    "-t",
    "ext4",
    "-d",
    join(bundle, "rootfs"),
    "-F",
    join(work, "rootfs.ext4"),
    `${sizeBytes / KiB}k`,
  ]);
  return {
    total: download + unpack + ext4,
    phases: { skopeo: download, umoci: unpack, mke2fs: ext4 },
  };
}

async function overlayTimes(work: string, sizeArg: string): Promise<number[]> {
  const base = join(work, `base-${sizeArg}.raw`);
  run(qemuImg, ["create", "-q", "-f", "raw", base, sizeArg]);
  const times: number[] = [];
  for (let i = 0; i < OVERLAY_RUNS; i++) {
    const overlay = join(work, `overlay-${sizeArg}-${i}.qcow2`);
    const start = performance.now();
    await createOverlay(base, overlay);
    times.push(performance.now() - start);
    rmSync(overlay, { force: true });
  }
  rmSync(base, { force: true });
  return times;
}

const phaseLine = (phases: Record<string, number>) =>
  Object.entries(phases)
    .map(([k, v]) => `${k} ${ms(v)}`)
    .join(", ");

function medianPhases(all: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(all[0] ?? {})) out[key] = median(all.map((p) => p[key] ?? 0));
  return out;
}

// ---------------------------------------------------------------- main

const work = mkdtempSync(join(tmpdir(), "corral-bench-image-"));
let registry: TestRegistry | undefined;
const cleanup = async () => {
  await registry?.stop();
  registry = undefined;
  rmSync(work, { recursive: true, force: true });
};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

const corral: Timed[] = [];
const peer: Timed[] = [];
let ext4Size = 0;
let description = "";
let small: number[] = [];
let large: number[] = [];
try {
  const image = await buildImage();
  const blobs = image.tars.map((t) => gzipSync(t));
  registry = await startRegistry();
  const pushed = await pushImage(registry.url, "bench/app", "1", {
    manifestMediaType: OCI_MANIFEST,
    layers: blobs.map((data) => ({ data, mediaType: GZIP })),
    config: {
      created: "2024-01-02T03:04:05Z",
      architecture: "amd64",
      os: "linux",
      config: { Env: ["PATH=/usr/bin:/bin"], WorkingDir: "/app", Cmd: ["/bin/sh"] },
      rootfs: { type: "layers", diff_ids: image.tars.map((t) => sha256(t)) },
    },
  });
  const ref = `${registry.host}/bench/app:1`;
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  const gz = blobs.reduce((n, b) => n + b.length, 0);
  const tarBytes = image.tars.reduce((n, t) => n + t.length, 0);
  description =
    `${blobs.length} gzip layers, ${image.entries} tar entries, ${mib(gz)} compressed ` +
    `(${mib(tarBytes)} tar; ${mib(image.randomBytes)} random + ${mib(image.textBytes)} text), ` +
    `manifest ${pushed.digest.slice(7, 19)}`;
  process.stdout.write(`image: ${ref}: ${description}\n`);

  let n = 0;
  const fresh = (what: string) => {
    const path = join(work, `${what}-${n++}`);
    mkdirSync(path);
    return path;
  };
  // Warm-up (not counted): JIT, page cache of the registry's blobs, tool binaries.
  const warm = await corralPull(ref, fresh("cache"));
  ext4Size = warm.sizeBytes;
  peers(ref, fresh("peers"), ext4Size);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work);

  for (let i = 0; i < runs; i++) {
    const cacheDir = fresh("cache");
    const c = await corralPull(ref, cacheDir);
    rmSync(cacheDir, { recursive: true, force: true });
    if (c.sizeBytes !== ext4Size) throw new Error("corral's ext4 size changed between runs");
    const peerDir = fresh("peers");
    const p = peers(ref, peerDir, ext4Size);
    rmSync(peerDir, { recursive: true, force: true });
    corral.push(c);
    peer.push(p);
    process.stdout.write(
      `run ${i + 1}/${runs}: corral ${ms(c.total)} (${phaseLine(c.phases)}); ` +
        `peers ${ms(p.total)} (${phaseLine(p.phases)})\n`,
    );
  }

  small = await overlayTimes(work, "1G");
  large = await overlayTimes(work, "20G");
} finally {
  await cleanup();
}

const a = median(corral.map((t) => t.total));
const b = median(peer.map((t) => t.total));
process.stdout.write(`ext4 size (corral's choice, used for both): ${ext4Size / MiB} MiB\n`);
process.stdout.write(
  `corral pullImage, download+unpack+ext4 (median of ${runs}): ${ms(a)} ` +
    `(${phaseLine(medianPhases(corral.map((t) => t.phases)))})\n`,
);
process.stdout.write(
  `skopeo copy + umoci unpack + mke2fs -d (median of ${runs}): ${ms(b)} ` +
    `(${phaseLine(medianPhases(peer.map((t) => t.phases)))})\n`,
);
const s = median(small);
const l = median(large);
// "Equal within noise": the medians differ by less than 10 ms or 25% of the smaller one.
const equal = Math.abs(s - l) < Math.max(10, 0.25 * Math.min(s, l));
const list = (v: number[]) => v.map((x) => x.toFixed(0)).join("/");
process.stdout.write(
  `createOverlay on a 1 GiB raw base (median of ${OVERLAY_RUNS}): ${ms(s)} [${list(small)}]\n` +
    `createOverlay on a 20 GiB raw base (median of ${OVERLAY_RUNS}): ${ms(l)} [${list(large)}]\n` +
    `overlay 1 GiB vs 20 GiB: ${equal ? "equal" : "NOT equal"} within noise; ` +
    `${Math.max(s, l) < 100 ? "both" : "NOT both"} under 100 ms\n`,
);
process.stdout.write(`ratio: ${(a / b).toFixed(2)}\n`);
