/** write_file / read_file: whole-file transfers over one connection each. */
import { Readable } from "node:stream";
import { CorralError } from "../../errors.js";
import { AgentConnection, type Connect, openStream } from "./connection.js";
import { decodeKvMap, type Frame, parseUint, requireKey } from "./frames.js";
import { pumpReadable, sendChunks } from "./pump.js";
import { checkAbsolutePath, checkMode, checkPositiveInt, checkUser, invalid } from "./validate.js";

export interface WriteFileOptions {
  /** Permission bits; default 0o644. */
  mode?: number;
  /** Write as this guest user (permissions and ownership apply); default root. */
  user?: string;
}

export interface ReadFileOptions {
  /** Fail instead of buffering more than this; default 64 MiB. */
  maxBytes?: number;
  user?: string;
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER;

function parseSize(frame: Frame): number {
  return parseUint(requireKey(decodeKvMap(frame.payload), "size", "Z"), MAX_FILE_SIZE, "size");
}

export async function writeFile(
  connect: Connect,
  path: string,
  data: Buffer | Readable,
  opts: WriteFileOptions = {},
): Promise<{ size: number }> {
  const entries: Array<[string, string]> = [["path", checkAbsolutePath("path", path)]];
  if (opts.mode !== undefined) entries.push(["mode", checkMode(opts.mode).toString(8)]);
  if (opts.user !== undefined) entries.push(["user", checkUser(opts.user)]);
  if (!Buffer.isBuffer(data) && !(data instanceof Readable)) {
    throw invalid("data", "must be a Buffer or a Readable");
  }
  const socket = await openStream(connect);
  let sent = 0;
  return new Promise((resolve, reject) => {
    const conn = new AgentConnection(socket, "Z", {
      frame: (frame) => {
        const size = parseSize(frame);
        if (size !== sent) {
          throw new CorralError("AGENT_PROTOCOL", `guest wrote ${size} bytes, corral sent ${sent}`);
        }
        conn.complete();
        resolve({ size });
      },
      failed: reject,
    });
    conn.request("write_file", entries);
    const body = Buffer.isBuffer(data)
      ? sendChunks(conn, data, "W")
      : pumpReadable(conn, data, "W");
    body.then(
      (n) => {
        sent = n;
        conn.send("E");
      },
      (err: unknown) =>
        conn.fail(
          new CorralError("AGENT", `reading data for ${path} failed: ${String(err)}`, {
            cause: err,
          }),
        ),
    );
  });
}

export async function readFile(
  connect: Connect,
  path: string,
  opts: ReadFileOptions = {},
): Promise<Buffer> {
  const entries: Array<[string, string]> = [["path", checkAbsolutePath("path", path)]];
  const maxBytes =
    opts.maxBytes === undefined ? DEFAULT_MAX_BYTES : checkPositiveInt("maxBytes", opts.maxBytes);
  if (opts.user !== undefined) entries.push(["user", checkUser(opts.user)]);
  const socket = await openStream(connect);
  const chunks: Buffer[] = [];
  let total = 0;
  return new Promise((resolve, reject) => {
    const conn = new AgentConnection(socket, "DZ", {
      frame: (frame) => {
        if (frame.type === "D") {
          total += frame.payload.length;
          if (total > maxBytes) {
            throw new CorralError("AGENT", `${path} is larger than ${maxBytes} bytes`, {
              hint: "raise maxBytes, or copy the file in pieces",
              details: { maxBytes },
            });
          }
          chunks.push(frame.payload);
          return;
        }
        const size = parseSize(frame);
        if (size !== total) {
          throw new CorralError(
            "AGENT_PROTOCOL",
            `guest announced ${size} bytes but sent ${total}`,
          );
        }
        conn.complete();
        resolve(Buffer.concat(chunks, total));
      },
      failed: reject,
    });
    conn.request("read_file", entries);
  });
}
