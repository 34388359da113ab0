import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { setting } from "../paths/roots.js";

/** Finds an executable on PATH (plus /usr/sbin and /sbin, which non-root PATHs often lack: mke2fs lives there). */
export function which(command: string): string | undefined {
  const dirs = (setting("PATH") ?? "").split(delimiter).filter(Boolean);
  for (const extra of ["/usr/sbin", "/sbin"]) {
    if (!dirs.includes(extra)) dirs.push(extra);
  }
  for (const dir of dirs) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
