/** Ctrl-C (and SIGTERM) as an AbortSignal for the library's long operations. */
import { CorralError } from "../index.js";

/**
 * The first signal aborts the operation with a CANCELLED error (the library then kills what it
 * started); a second one exits at once with 130, for a user who will not wait for the cleanup.
 */
export function abortOnInterrupt(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  let count = 0;
  const handler = () => {
    count++;
    if (count === 1) controller.abort(new CorralError("CANCELLED", "interrupted"));
    else process.exit(130);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off("SIGINT", handler);
      process.off("SIGTERM", handler);
    },
  };
}
