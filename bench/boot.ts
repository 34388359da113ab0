/**
 * Boot benchmark: (a) raw QEMU booting corral's kernel + initramfs until the guest init's
 * first console line, vs (b) `corral run --rm -- true` end to end (CLI start, boot, agent
 * ready, exec, teardown). Interleaved runs, medians; last line `ratio: b/a`.
 *
 *   npm run bench:boot [-- --runs 7]
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { requireTool } from "../src/host/tools.js";
import { findDefaultImage } from "../src/images/default-image.js";
import { median, ms } from "./stats.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const runsArg = process.argv.indexOf("--runs");
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;

const image = findDefaultImage();
if (image === undefined) throw new Error('no default image: run "corral setup" first');
const qemu = requireTool("qemu-system-x86_64");

function rawBoot(): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(
      qemu,
      [
        "-machine",
        "q35",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "256M",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        image!.kernel,
        "-initrd",
        image!.initrd,
        "-append",
        image!.cmdline,
        "-serial",
        "stdio",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`raw boot printed no init line in 60 s:\n${out.slice(-2000)}`));
    }, 60_000);
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("corral-init: start")) {
        const elapsed = performance.now() - start;
        clearTimeout(timer);
        child.kill("SIGKILL");
        child.on("close", () => resolve(elapsed));
      }
    });
  });
}

function corralRun(stateDir: string): number {
  const start = performance.now();
  const r = spawnSync(
    process.execPath,
    [join(root, "dist", "cli", "main.js"), "run", "--rm", "--", "true"],
    {
      env: { ...process.env, CORRAL_STATE_DIR: stateDir },
      stdio: ["ignore", "inherit", "pipe"],
    },
  );
  const elapsed = performance.now() - start;
  if (r.status !== 0) throw new Error(`corral run failed (${r.status}): ${r.stderr.toString()}`);
  return elapsed;
}

const build = spawnSync("npm", ["run", "build", "--silent"], { cwd: root, stdio: "inherit" });
if (build.status !== 0) throw new Error("npm run build failed");
const stateDir = mkdtempSync(join(tmpdir(), "corral-bench-"));
const raw: number[] = [];
const corral: number[] = [];
try {
  await rawBoot(); // warm the page cache for both
  corralRun(stateDir);
  for (let i = 0; i < runs; i++) {
    raw.push(await rawBoot());
    corral.push(corralRun(stateDir));
    process.stdout.write(`run ${i + 1}/${runs}: raw ${ms(raw[i]!)}, corral ${ms(corral[i]!)}\n`);
  }
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
const a = median(raw);
const b = median(corral);
process.stdout.write(`image: ${image.name} ${image.version}\n`);
process.stdout.write(`raw QEMU boot to init's first line (median of ${runs}): ${ms(a)}\n`);
process.stdout.write(`corral run --rm -- true, end to end (median of ${runs}): ${ms(b)}\n`);
process.stdout.write(`ratio: ${(b / a).toFixed(2)}\n`);
