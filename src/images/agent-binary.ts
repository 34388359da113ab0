/**
 * Compiles the guest agent (every agent/*.c, main in agent/corral-agent.c) into a static
 * binary, cached by the hash of its sources (.c and .h) and compiler so a rebuild happens only
 * when either changes.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { noProgress, type ProgressListener } from "../base/progress.js";
import { CorralError } from "../errors.js";
import { cachePaths } from "../paths/layout.js";
import { setting } from "../paths/roots.js";

export const AGENT_BINARY_NAME = "corral-agent";

/** musl gives a small static binary; glibc's static build is the fallback. */
const COMPILERS = ["musl-gcc", "gcc"] as const;
const FLAGS = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror"] as const;

/** Both src/images/ (tsx) and dist/images/ (tsc) sit two levels below the package root. */
export function agentSourceDir(): string {
  return fileURLToPath(new URL("../../agent/", import.meta.url));
}

interface SourceFile {
  name: string;
  path: string;
  data: Buffer;
}

/** The agent's .c and .h files in a stable (code point) order; the .c files are compiled. */
async function readSources(dir: string): Promise<SourceFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isFile() && (e.name.endsWith(".c") || e.name.endsWith(".h")))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (!names.some((name) => name.endsWith(".c"))) throw new Error(`no .c files in ${dir}`);
  return Promise.all(
    names.map(async (name) => {
      const path = join(dir, name);
      return { name, path, data: await readFile(path) };
    }),
  );
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (setting("PATH") ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

async function pickCompiler(): Promise<{ name: string; path: string }> {
  for (const name of COMPILERS) {
    const path = await findOnPath(name);
    if (path !== undefined) return { name, path };
  }
  throw new CorralError("TOOL_MISSING", "no C compiler found to build the guest agent", {
    hint: "apt-get install musl-tools",
  });
}

function compile(compiler: string, sources: readonly string[], output: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(compiler, [...FLAGS, "-o", output, ...sources], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      if (stderr.length < 16_384) stderr += chunk;
    });
    child.on("error", (err) =>
      reject(
        new CorralError("TOOL_MISSING", `cannot run ${compiler}: ${err.message}`, {
          hint: "apt-get install musl-tools",
          cause: err,
        }),
      ),
    );
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      reject(
        new CorralError(
          "IMAGE_BUILD",
          `compiling the guest agent failed (${signal ?? `exit ${code}`})`,
          {
            details: { compiler, stderr: stderr.trim().slice(-4000) },
          },
        ),
      );
    });
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Returns the path of the compiled agent, building it on first use. */
export async function buildAgent(opts: { onProgress?: ProgressListener } = {}): Promise<string> {
  const onProgress = opts.onProgress ?? noProgress;
  const sourceDir = agentSourceDir();
  let sources: SourceFile[];
  try {
    sources = await readSources(sourceDir);
  } catch (err) {
    throw new CorralError("INTERNAL", `guest agent source missing at ${sourceDir}`, {
      cause: err,
    });
  }
  const compiler = await pickCompiler();
  const sourceHash = createHash("sha256");
  // Names too, so renaming or moving code between files is a change.
  for (const file of sources)
    sourceHash.update(file.name).update("\0").update(file.data).update("\0");
  const hash = createHash("sha256")
    .update(sourceHash.digest())
    .update("\0")
    .update(compiler.name)
    .update("\0")
    .update(FLAGS.join(" "))
    .digest("hex")
    .slice(0, 16);
  const dir = cachePaths.build("agent", hash);
  const binary = join(dir, AGENT_BINARY_NAME);
  if (await exists(binary)) return binary;

  onProgress({ phase: "build", label: AGENT_BINARY_NAME });
  await mkdir(dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${randomBytes(4).toString("hex")}`;
  await mkdir(tmp);
  try {
    const cFiles = sources.filter((file) => file.name.endsWith(".c")).map((file) => file.path);
    await compile(compiler.path, cFiles, join(tmp, AGENT_BINARY_NAME));
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    // A concurrent build may have won the rename; its result is just as good.
    if (!(await exists(binary))) throw err;
  }
  onProgress({ phase: "build", label: AGENT_BINARY_NAME, done: true });
  return binary;
}
