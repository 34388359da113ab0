/**
 * Entry point of `corral daemon` (spawned detached by DaemonClient.ensure, or run in the
 * foreground with `corral daemon run`). `--state-dir DIR` names the state root it serves.
 */
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { daemonPaths } from "../paths/layout.js";
import { Daemon } from "./daemon.js";
import { startVmParts, switches } from "./parts.js";

const DEFAULT_IDLE_MS = 60_000;

export async function runDaemon(options: { idleMs?: number; foreground?: boolean } = {}) {
  const log = (message: string, fields?: Record<string, unknown>) => {
    const line = `${JSON.stringify({ time: new Date().toISOString(), pid: process.pid, message, ...fields })}\n`;
    if (options.foreground === true) process.stderr.write(line);
    else appendFileSync(daemonPaths().log, line);
  };
  const idleEnv = Number(process.env.CORRAL_DAEMON_IDLE_MS);
  const daemon = new Daemon({
    idleMs:
      options.idleMs ?? (Number.isFinite(idleEnv) && idleEnv >= 0 ? idleEnv : DEFAULT_IDLE_MS),
    startParts: (record, paths, channel) => startVmParts(record, paths, channel, log),
    switches: () => switches.list(),
    log,
  });
  const stop = () => void daemon.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("uncaughtException", (err) => log("uncaught exception", { error: String(err.stack) }));
  daemon.onClose(() => switches.close());
  await daemon.listen();
  log("listening", { socket: daemonPaths().socket });
  return daemon;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const at = process.argv.indexOf("--state-dir");
  if (at > 0 && process.argv[at + 1] !== undefined) {
    process.env.CORRAL_STATE_DIR = process.argv[at + 1];
  }
  runDaemon().catch((err) => {
    process.stderr.write(`corral daemon: ${String(err)}\n`);
    process.exit(1);
  });
}
