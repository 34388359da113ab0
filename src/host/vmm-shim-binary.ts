/**
 * Builds native/vmm-shim.c with the host's C compiler, once per (source, compiler) pair.
 * The shim is one translation unit: vmm-shim.c includes its parts (native/vmm-shim/), so it
 * alone is compiled, and the source hashed is every .c and .h file under native/.
 * The binary lands in the cache through a temp dir + rename, so a crash mid-build or two
 * concurrent builds never leave a half-written shim where the host would run it.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { commitTemp } from "../base/atomic.js";
import { CorralError } from "../errors.js";
import { cachePaths } from "../paths/layout.js";

const run = promisify(execFile);

/** Same depth from src/host/ (tsx) and dist/host/ (tsc), so one relative path serves both. */
export const vmmShimSource = fileURLToPath(new URL("../../native/vmm-shim.c", import.meta.url));

/** Every .c and .h file under `dir`, as paths relative to it, in a stable (code point) order. */
async function sourceFiles(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) found.push(...(await sourceFiles(dir, path)));
    else if (entry.isFile() && /\.[ch]$/.test(entry.name)) found.push(path);
  }
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The hash of every source file's name and content: a change to any part rebuilds. */
async function sourceHash(): Promise<Buffer> {
  const dir = dirname(vmmShimSource);
  const hash = createHash("sha256");
  for (const path of await sourceFiles(dir)) {
    hash
      .update(path)
      .update("\0")
      .update(await readFile(join(dir, path)))
      .update("\0");
  }
  return hash.digest();
}

const CFLAGS = ["-O2", "-Wall", "-Wextra"];
const COMPILERS = ["cc", "gcc"];

let building: Promise<string> | undefined;

async function findCompiler(): Promise<{ cc: string; version: string }> {
  for (const cc of COMPILERS) {
    try {
      const { stdout } = await run(cc, ["--version"]);
      return { cc, version: stdout };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  throw new CorralError("TOOL_MISSING", "no C compiler (cc or gcc) found to build the vmm shim", {
    // macOS's cc comes with Apple's Command Line Tools.
    hint: process.platform === "darwin" ? "xcode-select --install" : "apt-get install gcc",
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function build(): Promise<string> {
  await readFile(vmmShimSource); // a missing shim source fails here, with the file's name
  const source = await sourceHash();
  const { cc, version } = await findCompiler();
  const hash = createHash("sha256")
    .update(source)
    .update("\0")
    .update(version)
    .update("\0")
    .update(CFLAGS.join(" "))
    .digest("hex")
    .slice(0, 16);
  const dir = cachePaths.build("vmm-shim", hash);
  const binary = join(dir, "vmm-shim");
  if (await exists(binary)) return binary;

  await mkdir(dirname(dir), { recursive: true });
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    await run(cc, [...CFLAGS, "-o", join(tmp, "vmm-shim"), vmmShimSource]);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    const stderr = (err as { stderr?: string }).stderr ?? "";
    throw new CorralError("SETUP", `compiling the vmm shim with ${cc} failed`, {
      cause: err,
      details: { compiler: cc, source: vmmShimSource, stderr: stderr.slice(0, 4000) },
    });
  }
  try {
    await commitTemp(tmp, dir);
  } catch (err) {
    // Another process finished the same build first; its result is identical.
    if (await exists(binary)) return binary;
    throw err;
  }
  return binary;
}

/** Returns the path of a compiled vmm-shim, compiling it on first use. */
export function buildVmmShim(): Promise<string> {
  // Calls are chained, so concurrent callers share one compile.
  const previous = building;
  const next = (async () => {
    const path = await previous?.catch(() => undefined);
    // The cache may have been cleared (or CORRAL_CACHE_DIR changed) since the last call.
    if (path?.startsWith(cachePaths.build("vmm-shim", "")) === true && (await exists(path))) {
      return path;
    }
    return build();
  })();
  building = next;
  return next;
}
