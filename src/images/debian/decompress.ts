import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { CorralError } from "../../errors.js";

export type Compression = "xz" | "gz" | "zst" | "none";

/** Compression of a .deb member or index file, from its name. */
export function compressionOf(name: string): Compression | undefined {
  if (name.endsWith(".xz")) return "xz";
  if (name.endsWith(".gz")) return "gz";
  if (name.endsWith(".zst")) return "zst";
  if (name.endsWith(".tar") || !name.includes(".")) return "none";
  return undefined;
}

function toolFor(kind: "xz" | "zst", extraArgs: string[]): [string, string[]] {
  // Node has no xz or zstd decoder; the host tools stream faster than any JS one anyway.
  return kind === "xz" ? ["xz", ["-dc", ...extraArgs]] : ["zstd", ["-dc", "-q", ...extraArgs]];
}

/**
 * Decompresses a stream. Errors of the decoder (missing tool, corrupt input, non-zero exit)
 * surface as an error on the returned stream, so a consumer's pipeline fails instead of
 * seeing silently truncated data.
 */
export function decompress(kind: Compression, input: Readable, extraArgs: string[] = []): Readable {
  if (kind === "none") return input;
  if (kind === "gz") {
    const gunzip = createGunzip();
    input.on("error", (err) => gunzip.destroy(err));
    return input.pipe(gunzip);
  }
  const [cmd, args] = toolFor(kind, extraArgs);
  const out = new PassThrough();
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  let failed = false;
  const fail = (err: Error) => {
    if (failed) return;
    failed = true;
    child.kill();
    out.destroy(err);
  };
  child.on("error", (err) => {
    fail(
      new CorralError("TOOL_MISSING", `cannot run ${cmd}: ${err.message}`, {
        cause: err,
        hint: `install ${kind === "xz" ? "xz-utils" : "zstd"}`,
      }),
    );
  });
  // A consumer that stops early (it found what it needed) closes stdin under the decoder: fine.
  child.stdin.on("error", () => {});
  input.on("error", (err) => fail(err));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  let stdoutEnded = false;
  let exitCode: number | null | undefined;
  const finish = () => {
    if (!stdoutEnded || exitCode === undefined || failed) return;
    if (exitCode === 0) out.end();
    else
      fail(
        new CorralError("ARCHIVE", `${cmd} ${args.join(" ")} failed: ${stderr.trim() || exitCode}`),
      );
  };
  child.stdout.on("end", () => {
    stdoutEnded = true;
    finish();
  });
  child.on("close", (code) => {
    exitCode = code;
    finish();
  });
  out.on("close", () => {
    if (exitCode === undefined) child.kill();
  });
  return out;
}

export async function decompressBuffer(
  kind: Compression,
  data: Uint8Array,
  extraArgs: string[] = [],
): Promise<Buffer> {
  const input = new PassThrough();
  input.end(data);
  const chunks: Buffer[] = [];
  await pipeline(decompress(kind, input, extraArgs), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}
