/**
 * Runs the real CLI (from source, via tsx) against a private state directory, so tests never
 * see the user's VMs, while sharing the image cache that `corral setup` filled.
 */
import { type SpawnOptions, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runRoot } from "../../src/paths/layout.js";
import { processesMentioning } from "../support/processes.js";

export { processesMentioning };

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const cliEntry = join(repoRoot, "src", "cli", "main.ts");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface Sandbox {
  stateDir: string;
  env: NodeJS.ProcessEnv;
  corral(
    args: string[],
    options?: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number },
  ): Promise<CliResult>;
  spawnCorral(args: string[], options?: SpawnOptions): ReturnType<typeof spawn>;
  /** Kills every VM of this sandbox, removes its state, and fails if any process survives. */
  cleanup(): Promise<void>;
}

export interface SandboxOptions {
  /** Runs every corral command under this argv prefix, e.g. `ip netns exec NS`. */
  commandPrefix?: string[];
}

export function sandbox(options: SandboxOptions = {}): Sandbox {
  const prefix = options.commandPrefix ?? [];
  const stateDir = mkdtempSync(join(tmpdir(), "corral-it-"));
  const env = { ...process.env, CORRAL_STATE_DIR: stateDir, CORRAL_DAEMON_IDLE_MS: "5000" };
  const spawnCorral = (args: string[], spawnOptions: SpawnOptions = {}) =>
    spawn(
      prefix[0] ?? process.execPath,
      [
        ...prefix.slice(1),
        ...(prefix.length > 0 ? [process.execPath] : []),
        "--import",
        "tsx",
        cliEntry,
        ...args,
      ],
      {
        cwd: repoRoot,
        env,
        stdio: ["pipe", "pipe", "pipe"],
        ...spawnOptions,
      },
    );
  const corral: Sandbox["corral"] = (args, options = {}) =>
    new Promise((resolve, reject) => {
      const child = spawnCorral(args, { env: options.env ?? env });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout?.on("data", (c: Buffer) => out.push(c));
      child.stderr?.on("data", (c: Buffer) => err.push(c));
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 180_000);
      child.on("error", reject);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        resolve({
          code,
          signal,
          stdout: Buffer.concat(out),
          stderr: Buffer.concat(err).toString(),
        });
      });
      if (options.input !== undefined) child.stdin?.end(options.input);
      else child.stdin?.end();
    });
  return {
    stateDir,
    env,
    corral,
    spawnCorral,
    async cleanup() {
      let names: string[] = [];
      try {
        names = readdirSync(join(stateDir, "vms"));
      } catch {
        names = [];
      }
      if (names.length > 0) await corral(["rm", "-f", ...names]);
      await corral(["daemon", "stop"]);
      const survivors = processesMentioning(stateDir);
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(runRootOf(stateDir), { recursive: true, force: true });
      if (survivors.length > 0) {
        throw new Error(`processes of ${stateDir} survived cleanup: ${survivors.join(", ")}`);
      }
    },
  };
}

/** The socket directory corral derives from a state directory (see src/core/layout.ts). */
function runRootOf(stateDir: string): string {
  const saved = process.env.CORRAL_STATE_DIR;
  process.env.CORRAL_STATE_DIR = stateDir;
  try {
    return runRoot();
  } finally {
    if (saved === undefined) delete process.env.CORRAL_STATE_DIR;
    else process.env.CORRAL_STATE_DIR = saved;
  }
}
