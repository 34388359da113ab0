/**
 * Edits an unmounted ext4 image with `debugfs -w -f <script>`: one process for all fixups.
 * debugfs exits 0 even when a command fails, so failures are read from stderr, where it
 * prints nothing else but its version banner.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CorralError } from "../../errors.js";
import { e2fsTool, runTool } from "./run-tool.js";

/** Quotes an argument for debugfs's parser (libss): double quotes, `""` for a literal quote. */
export function debugfsQuote(arg: string): string {
  if (arg.includes("\n") || arg.includes("\0")) {
    throw new CorralError("IMAGE_BUILD", `cannot pass ${JSON.stringify(arg)} to debugfs`, {
      hint: "file names with newlines cannot be given device nodes, xattrs or owners here",
    });
  }
  return `"${arg.replaceAll('"', '""')}"`;
}

type Line = string | ((valuesDir: string) => string);

export class DebugfsScript {
  private readonly lines: Line[] = [];
  private readonly values: Buffer[] = [];

  /** One command; arguments must already be quoted with debugfsQuote. */
  add(...words: string[]): void {
    this.lines.push(words.join(" "));
  }

  /** Values go through files (`ea_set -f`): binary bytes would not survive the parser. */
  setXattr(path: string, name: string, value: Buffer): void {
    const file = `value-${this.values.push(value) - 1}`;
    this.lines.push(
      (dir) =>
        `ea_set -f ${debugfsQuote(join(dir, file))} ${debugfsQuote(path)} ${debugfsQuote(name)}`,
    );
  }

  get length(): number {
    return this.lines.length;
  }

  async run(image: string, signal?: AbortSignal): Promise<void> {
    if (this.lines.length === 0) return;
    const dir = await mkdtemp(join(tmpdir(), "corral-debugfs-"));
    try {
      for (const [i, value] of this.values.entries())
        await writeFile(join(dir, `value-${i}`), value);
      const script = join(dir, "script");
      const text = this.lines.map((line) => (typeof line === "string" ? line : line(dir)));
      await writeFile(script, `${text.join("\n")}\n`);
      const result = await runTool(e2fsTool("debugfs"), ["-w", "-f", script, image], signal);
      const errors = result.stderr
        .split("\n")
        .filter((line) => line.trim() !== "" && !/^debugfs \d/.test(line));
      if (result.code !== 0 || errors.length > 0) {
        throw new CorralError("IMAGE_BUILD", `debugfs failed on ${image}: ${errors[0] ?? ""}`, {
          details: { errors: errors.slice(0, 20), code: result.code },
        });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
