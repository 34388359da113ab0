/** Installs Debian packages with apt-get (argv arrays; root only). */
import { spawn } from "node:child_process";
import { CorralError } from "../errors.js";
import { which } from "./which.js";

export function canUseApt(): boolean {
  return process.getuid?.() === 0 && which("apt-get") !== undefined;
}

export function aptInstallCommand(packages: readonly string[]): string {
  return `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${packages.join(" ")}`;
}

function runApt(args: string[], onOutput: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("apt-get", args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    let tail = "";
    const collect = (chunk: Buffer) => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split("\n")) if (line.trim() !== "") onOutput(line);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", (err) => reject(err));
    child.on("close", (code) => {
      if (code === 0) resolve();
      else
        reject(
          new CorralError("SETUP", `apt-get ${args[0]} failed with exit code ${code}`, {
            hint: `output ended with:\n${tail.trim().split("\n").slice(-5).join("\n")}`,
          }),
        );
    });
  });
}

export async function aptInstall(
  packages: readonly string[],
  onOutput: (line: string) => void,
): Promise<void> {
  await runApt(["update"], onOutput);
  await runApt(["install", "-y", "--no-install-recommends", ...packages], onOutput);
}
