/** Everything the CLI prints goes through here: errors, tables, JSON, progress. */

import { asCorralError, exitCode, formatSize, type ProgressEvent } from "../index.js";
import { withFlag } from "./flags.js";

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ");
  process.stdout.write(`${[line(headers), ...rows.map(line)].join("\n")}\n`);
}

export function renderError(err: unknown, debug: boolean): void {
  const error = asCorralError(err);
  let text = `corral: error: ${withFlag(error.message, error.field)}`;
  if (error.hint !== undefined) text += `\n  hint: ${error.hint.replace(/\n/g, "\n    ")}`;
  if (debug) {
    text += `\n  code: ${error.code} (${error.kind})`;
    if (error.field !== undefined) text += `\n  field: ${error.field}`;
    text += `\n${error.stack ?? ""}`;
    let cause = error.cause;
    while (cause !== undefined) {
      text += `\ncaused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`;
      cause = cause instanceof Error ? cause.cause : undefined;
    }
  }
  process.stderr.write(`${text}\n`);
}

/** 2 for bad input, 3 for a missing host tool, 130 when cancelled, else 1 (errors.ts). */
export function exitCodeFor(err: unknown): number {
  return exitCode(asCorralError(err).kind);
}

/** Progress on stderr: a rewritten line on a terminal, one line per finished step otherwise. */
export function progressRenderer(enabled: boolean): (event: ProgressEvent) => void {
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  const printed = new Set<string>();
  return (event) => {
    if (!enabled) return;
    const amount =
      event.current === undefined
        ? ""
        : event.total === undefined
          ? ` ${formatSize(event.current)}`
          : ` ${formatSize(event.current)}/${formatSize(event.total)} (${Math.floor((100 * event.current) / Math.max(event.total, 1))}%)`;
    const text = `${event.phase}: ${event.label}${amount}`;
    if (tty) {
      const now = Date.now();
      if (!event.done && now - lastDraw < 100) return;
      lastDraw = now;
      process.stderr.write(`\r\x1b[K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`);
      if (event.done) process.stderr.write("\n");
    } else {
      // Logs and CI: one line per step, plus the final size of each download.
      const key = `${event.phase}\0${event.label}`;
      const finalAmount = event.done === true && event.current !== undefined;
      if (printed.has(key) && !finalAmount) return;
      if (!printed.has(key) && event.current !== undefined && !finalAmount) return;
      printed.add(key);
      process.stderr.write(`${text}\n`);
    }
  };
}

export function age(iso: string | undefined): string {
  if (iso === undefined) return "-";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}
