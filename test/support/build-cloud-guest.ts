/**
 * Builds (or finds in the cache) the cloud-init test guest and prints it as JSON.
 *
 *   node --import tsx test/support/build-cloud-guest.ts
 *
 * Progress goes to stderr, the JSON to stdout. Needs root and the Debian mirror on first run.
 */
import { ensureCloudGuest } from "./cloud-guest.js";

const started = Date.now();
try {
  const guest = await ensureCloudGuest({
    onProgress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(`cloud-guest: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.stdout.write(`${JSON.stringify(guest, null, 2)}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
