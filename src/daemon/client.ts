/**
 * The library's side of the per-user daemon: finds it, starts it on demand (detached, so it
 * outlives the CLI), and calls its API over the 0600 unix socket. Errors come back as
 * CorralErrors with the daemon's code and hint.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync } from "node:fs";
import { extname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Client } from "undici";
import { acquireLock } from "../base/lock.js";
import { CorralError, type ErrorCode, isErrorCode } from "../errors.js";
import {
  cacheRoot,
  daemonPaths,
  ensurePrivateDir,
  runBase,
  runRoot,
  stateRoot,
} from "../paths/layout.js";
import { currentEnv } from "../paths/roots.js";

const START_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 30_000;

export interface DaemonHealth {
  pid: number;
  version: string;
  startedAt: string;
  stateDir: string;
}

export class DaemonClient {
  private constructor(private readonly client: Client) {}

  /** The running daemon, or undefined when none answers. */
  static async ifRunning(): Promise<DaemonClient | undefined> {
    const { socket } = daemonPaths();
    if (!existsSync(socket)) return undefined;
    // /tmp is shared: a socket in a directory someone else made could be anyone's daemon.
    ensurePrivateDir(runRoot());
    if (lstatSync(socket).uid !== process.getuid?.()) {
      throw new CorralError("DAEMON", `${socket} does not belong to the current user`, {
        hint: `remove it; corral starts its own daemon`,
      });
    }
    const candidate = new DaemonClient(
      new Client("http://corral-daemon", { socketPath: socket, connect: { timeout: 2_000 } }),
    );
    try {
      await candidate.health();
      return candidate;
    } catch {
      await candidate.close();
      return undefined;
    }
  }

  /** The running daemon, started first if needed. */
  static async ensure(): Promise<DaemonClient> {
    const running = await DaemonClient.ifRunning();
    if (running !== undefined) return running;
    const paths = daemonPaths();
    mkdirSync(stateRoot(), { recursive: true, mode: 0o700 });
    const release = await acquireLock(paths.lock, "the corral daemon", START_TIMEOUT_MS);
    try {
      const raced = await DaemonClient.ifRunning();
      if (raced !== undefined) return raced;
      spawnDaemon();
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const started = await DaemonClient.ifRunning();
        if (started !== undefined) return started;
        if (Date.now() > deadline) {
          throw new CorralError("DAEMON", "the corral daemon did not start within 15 s", {
            hint: `see its log: ${paths.log}`,
          });
        }
        await sleep(50);
      }
    } finally {
      release();
    }
  }

  health(): Promise<DaemonHealth> {
    return this.request<DaemonHealth>("GET", "/v1/health");
  }

  async request<T>(method: "GET" | "PUT" | "POST" | "DELETE", path: string, body?: unknown) {
    let response: Awaited<ReturnType<Client["request"]>>;
    try {
      response = await this.client.request({
        method,
        path,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
    } catch (err) {
      throw new CorralError("DAEMON", `cannot reach the corral daemon: ${String(err)}`, {
        hint: `see its log: ${daemonPaths().log}`,
        cause: err,
      });
    }
    const text = await response.body.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      throw new CorralError("DAEMON", `the daemon answered ${response.statusCode} with non-JSON`);
    }
    if (response.statusCode >= 400) throw errorFromBody(parsed, response.statusCode);
    return parsed as T;
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => {});
  }
}

/**
 * The daemon's error as the CorralError it was (code, hint, field, details), so a caller
 * cannot tell a daemon-side failure from a local one. A code this copy does not know (a newer
 * daemon) becomes DAEMON, keeping the original in details.
 */
export function errorFromBody(body: unknown, status: number): CorralError {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === "string" ? value : undefined);
  const known = isErrorCode(b.code);
  const details =
    typeof b.details === "object" && b.details !== null
      ? (b.details as Record<string, unknown>)
      : undefined;
  return new CorralError(
    known ? (b.code as ErrorCode) : "DAEMON",
    text(b.message) ?? `the daemon answered HTTP ${status}`,
    {
      hint: text(b.hint),
      field: text(b.field),
      details: known ? details : { ...details, status, code: b.code, kind: b.kind },
    },
  );
}

/**
 * The daemon's environment: it is another process, so it serves the roots of whoever starts
 * it (an SDK instance's, inside its operations) only if they go along explicitly.
 */
export function daemonEnv(): NodeJS.ProcessEnv {
  return {
    ...currentEnv(),
    CORRAL_STATE_DIR: stateRoot(),
    CORRAL_CACHE_DIR: cacheRoot(),
    CORRAL_RUNTIME_DIR: runBase(),
  };
}

/**
 * The daemon is this package's own entry point run by the same Node; from source (tsx) the
 * loader has to come along.
 */
function spawnDaemon(): void {
  const self = fileURLToPath(import.meta.url);
  const entry = fileURLToPath(new URL(`./main${extname(self)}`, import.meta.url));
  const loader = extname(self) === ".ts" ? ["--import", "tsx"] : [];
  ensurePrivateDir(runRoot());
  const log = openSync(daemonPaths().log, "a", 0o600);
  try {
    const child = spawn(process.execPath, [...loader, entry, "--state-dir", stateRoot()], {
      detached: true,
      stdio: ["ignore", log, log],
      env: daemonEnv(),
    });
    child.unref();
  } finally {
    closeSync(log);
  }
}
