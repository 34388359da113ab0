/** The per-user daemon, from the SDK's side: run it in this process, ask about it, stop it. */
import type { Daemon } from "../daemon/daemon.js";

export { type DaemonStatus, daemonStatus, stopDaemon } from "../daemon/control.js";

export interface RunDaemonOptions {
  /** Exit after this long with nothing to serve; 0 = never (default: CORRAL_DAEMON_IDLE_MS or 60 s). */
  idleMs?: number;
  /** Log to stderr instead of the daemon's log file. */
  foreground?: boolean;
}

/**
 * Runs the daemon in this process (what `corral daemon run` does) until it is stopped. Loaded
 * on use: the daemon's HTTP server would slow the start-up of everything that imports corral.
 */
export async function runDaemon(options: RunDaemonOptions = {}): Promise<Daemon> {
  const { runDaemon: run } = await import("../daemon/main.js");
  return run(options);
}
