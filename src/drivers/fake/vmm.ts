/**
 * The fake driver's "VMM": a small process that behaves like a VMM toward corral, so the real
 * lifecycle (shim, boot steps, readiness, reconcile, snapshots) runs against it in seconds.
 * The guest is corral's real agent, run on the host with `--listen-unix` (started by the shim
 * as a helper, so it dies with this process). This process:
 *   - serves hybrid vsock on the channel socket (`CONNECT 1024` reaches the agent), and
 *     announces the agent on `<channel>_1025` as the real guest init does;
 *   - has a control API (JSON lines on a unix socket, like Firecracker's): status, pause,
 *     resume (connections freeze while paused, as vCPUs would), powerdown (exits 0, as a
 *     guest that shut down), save (a paused VM's "RAM" into a state file);
 *   - keeps "guest RAM" as a directory whose files a snapshot carries and a restore puts back.
 * Every byte from a client is bounded: this file also models what corral may trust.
 */
import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";

const AGENT_PORT = 1024;
const READY_PORT = 1025;
const MAX_LINE = 256;
const MAX_RAM_FILES = 64;
const MAX_RAM_FILE_BYTES = 1024 * 1024;

const { values } = parseArgs({
  options: {
    channel: { type: "string" },
    agent: { type: "string" },
    api: { type: "string" },
    ram: { type: "string" },
    serial: { type: "string" },
    restore: { type: "string" },
  },
});
const channel = required("channel");
const agentSocket = required("agent");
const apiSocket = required("api");
const ramDir = required("ram");
const serialLog = required("serial");

function required(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") {
    process.stderr.write(`fake-vmm: --${name} is required\n`);
    process.exit(2);
  }
  return value;
}

let paused = values.restore !== undefined; // a restore waits for "resume", as QEMU's -S does
const frozen: (() => void)[] = [];
const whenRunning = (go: () => void) => (paused ? frozen.push(go) : go());

mkdirSync(ramDir, { recursive: true, mode: 0o700 });
if (values.restore !== undefined) loadRam(values.restore);
serial(values.restore === undefined ? "fake vmm: booting" : "fake vmm: restoring");

/** Reads one line of at most MAX_LINE bytes, then hands over the socket. */
function readLine(socket: Socket, onLine: (line: string) => void): void {
  let buffered = "";
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString("latin1");
    const nl = buffered.indexOf("\n");
    if (nl < 0) {
      if (buffered.length > MAX_LINE) socket.destroy();
      return;
    }
    socket.off("data", onData);
    socket.pause();
    const rest = buffered.slice(nl + 1);
    if (rest !== "") socket.unshift(Buffer.from(rest, "latin1"));
    onLine(buffered.slice(0, nl));
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

const vsock = createServer((client) => {
  readLine(client, (line) => {
    const port = /^CONNECT (\d{1,10})$/.exec(line)?.[1];
    if (Number(port) !== AGENT_PORT) {
      client.destroy(); // nothing listens there: the host sees the connection close
      return;
    }
    whenRunning(() => {
      const guest = createConnection(agentSocket);
      guest.once("connect", () => {
        client.write(`OK ${AGENT_PORT}\n`);
        client.pipe(guest);
        guest.pipe(client);
        client.resume();
      });
      guest.on("error", () => client.destroy());
      client.on("close", () => guest.destroy());
      guest.on("close", () => client.destroy());
    });
  });
});
vsock.listen(channel, () => chmodSync(channel, 0o600));

const api = createServer((socket) => {
  readLine(socket, (line) => {
    let reply: Record<string, unknown>;
    try {
      reply = { ok: true, ...control(JSON.parse(line) as { op?: unknown; dir?: unknown }) };
    } catch (err) {
      reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
    socket.end(`${JSON.stringify(reply)}\n`);
  });
});
api.listen(apiSocket, () => chmodSync(apiSocket, 0o600));

function control(request: { op?: unknown; dir?: unknown }): Record<string, unknown> {
  switch (request.op) {
    case "status":
      return { paused };
    case "pause":
      paused = true;
      return {};
    case "resume":
      paused = false;
      for (const go of frozen.splice(0)) go();
      return {};
    case "powerdown":
      serial("fake vmm: power button pressed, shutting down");
      setTimeout(() => process.exit(0), 20);
      return {};
    case "save": {
      if (!paused) throw new Error("save needs a paused VM");
      if (typeof request.dir !== "string") throw new Error("save needs a dir");
      const file = join(request.dir, "fake-state.json");
      writeFileSync(file, JSON.stringify({ ram: readRam() }), { mode: 0o600 });
      return { file: "fake-state.json" };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}`);
  }
}

function readRam(): Record<string, string> {
  const ram: Record<string, string> = {};
  for (const name of readdirSync(ramDir).slice(0, MAX_RAM_FILES)) {
    const data = readFileSync(join(ramDir, name));
    if (data.length <= MAX_RAM_FILE_BYTES) ram[name] = data.toString("base64");
  }
  return ram;
}

function loadRam(stateFile: string): void {
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as { ram?: Record<string, unknown> };
  for (const [name, data] of Object.entries(state.ram ?? {}).slice(0, MAX_RAM_FILES)) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name) || typeof data !== "string") continue;
    writeFileSync(join(ramDir, name), Buffer.from(data, "base64"), { mode: 0o600 });
  }
}

function serial(line: string): void {
  appendFileSync(serialLog, `${line}\n`);
}

/** The guest's init announces the agent once it listens (not after a restore: it never restarted). */
function announce(attempt = 0): void {
  const probe = createConnection(agentSocket);
  probe.once("connect", () => {
    probe.destroy();
    serial("fake vmm: agent ready");
    if (values.restore !== undefined) return;
    const notice = createConnection(`${channel}_${READY_PORT}`);
    notice.on("error", () => {});
    notice.end("READY fake 1\n");
  });
  probe.once("error", () => {
    if (attempt < 500) setTimeout(() => announce(attempt + 1), 10);
  });
}
announce();

process.on("SIGTERM", () => process.exit(143));
