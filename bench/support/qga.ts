/**
 * qemu-guest-agent as the exec benchmark's peer: an initramfs that is corral's default one
 * plus a second archive (the kernel unpacks concatenated archives in order; a later file
 * replaces an earlier one at the same path) holding the host's /usr/sbin/qemu-ga, every
 * library `ldd` lists for it at the same paths, and an /etc/inittab that also respawns it on
 * its virtio-serial port. And a small client for QGA's protocol (JSON lines over the
 * chardev's unix socket).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, realpathSync, writeFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { initFilesDir } from "../../src/images/default-image.js";
import type { ImageInfo } from "../../src/images/image-info.js";
import { type CpioEntry, writeGzipCpio } from "../../src/images/initramfs/cpio.js";

export const QGA_PORT_NAME = "org.qemu.guest_agent.0";
const QGA_BINARY = "/usr/sbin/qemu-ga";

/**
 * No udev in the guest, so no /dev/virtio-ports/ links: find the port by its name in sysfs
 * (virtio_console is loaded by rc from corral.modules=), then run qemu-ga on its vportNpM.
 */
const QGA_SCRIPT = `#!/bin/sh
for i in $(seq 1 500); do
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = ${QGA_PORT_NAME} ]; then
      exec ${QGA_BINARY} -m virtio-serial -p "/dev/\${p##*/}" -f /run/qemu-ga.pid -t /run
    fi
  done
  sleep 0.02
done
echo "bench: no ${QGA_PORT_NAME} port" > /dev/console
sleep 5
`;

/** The libraries the dynamic loader will look for, at the paths ldd resolved them to. */
function libraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const paths: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] !== undefined) paths.push(m[1]);
  }
  return paths;
}

/**
 * Writes `<dir>/initrd-qga.img` (base image's archive + the qemu-ga archive) and returns its
 * path and the size of the added archive.
 */
export async function buildQgaInitrd(
  image: ImageInfo,
  dir: string,
): Promise<{ path: string; addedBytes: number; libraries: number }> {
  const libs = libraries(QGA_BINARY);
  const inittab = readFileSync(join(initFilesDir(), "inittab"), "utf8");
  const entries: CpioEntry[] = [
    { path: QGA_BINARY, type: "file", mode: 0o755, source: QGA_BINARY },
    ...libs.map(
      (lib): CpioEntry => ({ path: lib, type: "file", mode: 0o755, source: realpathSync(lib) }),
    ),
    {
      path: "etc/inittab",
      type: "file",
      mode: 0o644,
      data: Buffer.from(`${inittab}::respawn:/etc/corral/qga\n`),
    },
    { path: "etc/corral/qga", type: "file", mode: 0o755, data: Buffer.from(QGA_SCRIPT) },
  ];
  const extra = join(dir, "qga.cpio.gz");
  const written = await writeGzipCpio(entries, extra);
  const path = join(dir, "initrd-qga.img");
  writeFileSync(path, Buffer.concat([readFileSync(image.initrd), readFileSync(extra)]));
  return { path, addedBytes: written.size, libraries: libs.length };
}

/** QEMU arguments for the guest agent's port, served on `socketPath`. */
export function qgaDeviceArgs(socketPath: string): string[] {
  return [
    "-device",
    "virtio-serial-pci,id=qgaserial",
    "-chardev",
    `socket,id=qga0,path=${socketPath},server=on,wait=off`,
    "-device",
    `virtserialport,bus=qgaserial.0,chardev=qga0,name=${QGA_PORT_NAME}`,
  ];
}

interface QgaReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

/** One connection to QGA's chardev; one command at a time (QGA answers in order). */
export class QgaClient {
  private buffered = "";
  private waiting: ((reply: QgaReply) => void) | undefined;
  private readonly replies: QgaReply[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffered += chunk;
      for (let nl = this.buffered.indexOf("\n"); nl >= 0; nl = this.buffered.indexOf("\n")) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        // guest-sync-delimited's 0xff marker and blank lines are not replies.
        const json = line.replace(/^\uFFFD+|^\xff+/, "");
        if (json === "") continue;
        const reply = JSON.parse(json) as QgaReply;
        const waiter = this.waiting;
        this.waiting = undefined;
        if (waiter === undefined) this.replies.push(reply);
        else waiter(reply);
      }
    });
  }

  static connect(path: string): Promise<QgaClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once("connect", () => resolve(new QgaClient(socket)));
      socket.once("error", reject);
    });
  }

  private next(timeoutMs: number): Promise<QgaReply | undefined> {
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
    });
  }

  /** Sends one command and returns its `return` value; QGA errors throw. */
  async execute<T>(command: string, args?: unknown, timeoutMs = 10_000): Promise<T> {
    const body = args === undefined ? { execute: command } : { execute: command, arguments: args };
    this.socket.write(`${JSON.stringify(body)}\n`);
    const reply = await this.next(timeoutMs);
    if (reply === undefined) throw new Error(`QGA: no reply to ${command} in ${timeoutMs} ms`);
    if (reply.error !== undefined) {
      throw new Error(`QGA ${command}: ${reply.error.class}: ${reply.error.desc}`);
    }
    return reply.return as T;
  }

  /**
   * guest-sync until the agent answers with our id (it may not be up yet, and replies to
   * earlier syncs can arrive late: those are skipped).
   */
  async sync(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let id = 1000; Date.now() < deadline; id++) {
      this.socket.write(`${JSON.stringify({ execute: "guest-sync", arguments: { id } })}\n`);
      const until = Date.now() + 500;
      for (;;) {
        const reply = await this.next(Math.max(1, until - Date.now()));
        if (reply === undefined) break;
        if (reply.return === id) {
          this.replies.length = 0;
          return;
        }
      }
    }
    throw new Error(`QGA did not answer guest-sync within ${timeoutMs} ms`);
  }

  close(): void {
    this.socket.destroy();
  }
}
