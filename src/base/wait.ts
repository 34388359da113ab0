import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError, throwIfCancelled } from "../errors.js";

/** Polls until `path` exists. Short interval: boot latency is what users feel. */
export async function waitForPath(
  path: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    throwIfCancelled(signal);
    if (Date.now() > deadline) {
      throw new CorralError("TIMEOUT", `${path} did not appear within ${timeoutMs} ms`);
    }
    await sleep(3);
  }
}

/** Runs `attempt` until it returns a value or the deadline passes; rethrows the last error. */
export async function retryUntil<T>(
  attempt: () => Promise<T | undefined>,
  options: { timeoutMs: number; intervalMs: number; signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    throwIfCancelled(options.signal);
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new CorralError("TIMEOUT", `gave up after ${options.timeoutMs} ms`);
    }
    await sleep(options.intervalMs);
  }
}
