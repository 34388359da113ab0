/** Runs an e2fsprogs tool (argv array, no shell) and collects its output. */
import { spawn } from "node:child_process";
import { CorralError, cancelled } from "../../errors.js";
import { which } from "../../host/which.js";

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const OUTPUT_LIMIT = 1 << 20;

export function e2fsTool(command: "mke2fs" | "debugfs" | "e2fsck"): string {
  const path = which(command);
  if (path !== undefined) return path;
  throw new CorralError("TOOL_MISSING", `${command} is not installed`, {
    hint: "apt-get install e2fsprogs",
    details: { command, aptPackage: "e2fsprogs" },
  });
}

/** Aborting `signal` kills the tool (SIGKILL: its output is a temp file the caller removes). */
export function runTool(
  path: string,
  args: readonly string[],
  signal?: AbortSignal,
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(signal === undefined ? {} : { signal, killSignal: "SIGKILL" as const }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      if (stdout.length < OUTPUT_LIMIT) stdout += chunk;
    });
    child.stderr.on("data", (chunk: string) => {
      if (stderr.length < OUTPUT_LIMIT) stderr += chunk;
    });
    child.on("error", (err) =>
      reject(
        signal?.aborted === true
          ? cancelled(signal)
          : new CorralError("TOOL_MISSING", `cannot run ${path}: ${err.message}`, {
              hint: "apt-get install e2fsprogs",
              cause: err,
            }),
      ),
    );
    child.on("close", (code) => {
      if (signal?.aborted === true) reject(cancelled(signal));
      else resolve({ code, stdout, stderr });
    });
  });
}
