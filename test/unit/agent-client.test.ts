/** Builds the real agent, runs it on the host over a unix socket, and drives it via AgentClient. */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, createConnection, createServer, type Socket } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isCorralError } from "../../src/errors.js";
import { buildAgent } from "../../src/images/agent-binary.js";
import { AgentClient } from "../../src/protocols/agent/client.js";
import { encodeFrame, encodeKv, FrameDecoder } from "../../src/protocols/agent/frames.js";

let dir: string;
let agent: ChildProcess;
let socketPath: string;
let client: AgentClient;

function connectTo(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

const connectUnix = () => connectTo(socketPath);

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!pidAlive(pid)) return true;
    await sleep(20);
  }
  return false;
}

/** Reads lines from a stream until one is available. */
function firstLine(stream: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        stream.off("data", onData);
        resolve(text.slice(0, nl));
      }
    };
    stream.on("data", onData);
    stream.once("end", () => reject(new Error(`stream ended before a line: ${text}`)));
  });
}

/** Sends raw bytes and collects the frames the agent answers with. */
async function rawExchange(bytes: Buffer): Promise<Array<{ type: string; text: string }>> {
  const socket = await connectUnix();
  const decoder = new FrameDecoder("PF12XDZ", 2 * 1024 * 1024);
  const frames: Array<{ type: string; text: string }> = [];
  socket.on("data", (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) frames.push({ type: f.type, text: f.payload.toString() });
  });
  socket.on("error", () => {});
  socket.write(bytes);
  await new Promise((resolve) => socket.once("close", resolve));
  return frames;
}

const isAgentError = (guestCode: string) => (err: unknown) =>
  isCorralError(err, "AGENT") && err.details?.guestCode === guestCode;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "corral-agent-"));
  process.env.CORRAL_CACHE_DIR = join(dir, "cache");
  const binary = await buildAgent();
  socketPath = join(dir, "agent.sock");
  agent = spawn(binary, ["--listen-unix", socketPath], { stdio: "ignore" });
  for (let i = 0; i < 200; i++) {
    try {
      (await connectUnix()).destroy();
      break;
    } catch {
      await sleep(10);
    }
  }
  client = new AgentClient(connectUnix);
});

after(async () => {
  if (agent !== undefined && agent.exitCode === null && agent.signalCode === null) {
    const exited = once(agent, "exit");
    agent.kill("SIGKILL");
    await exited;
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

describe("buildAgent", () => {
  it("returns the cached binary on a second call", async () => {
    const first = await buildAgent();
    const events: string[] = [];
    const second = await buildAgent({ onProgress: (e) => events.push(e.phase) });
    assert.equal(second, first);
    assert.deepEqual(events, []);
    assert.ok(first.startsWith(join(dir, "cache", "build", "agent-")));
  });
});

describe("agent: ping and exec", () => {
  it("answers ping", async () => {
    const pong = await client.ping();
    assert.equal(pong.version, "0.2.0");
    assert.equal(pong.protocol, "1");
    assert.ok(pong.kernel.length > 0);
    assert.ok(pong.uptimeMs > 0);
  });

  it("runs echo", async () => {
    const r = await client.run({ argv: ["echo", "hello", "world"] });
    assert.equal(r.stdout.toString(), "hello world\n");
    assert.equal(r.stderr.length, 0);
    assert.deepEqual([r.exitCode, r.signal, r.timedOut], [0, null, false]);
  });

  it("reports exit codes", async () => {
    for (const code of [0, 1, 7]) {
      const r = await client.run({ argv: ["sh", "-c", `exit ${code}`] });
      assert.equal(r.exitCode, code);
      assert.equal(r.signal, null);
    }
  });

  it("reports death by signal", async () => {
    const r = await client.run({ argv: ["sh", "-c", "kill -USR1 $$"] });
    assert.deepEqual([r.exitCode, r.signal], [null, "SIGUSR1"]);
  });

  it("keeps stderr separate and passes a 10 MiB stdout intact", async () => {
    const script = "head -c 10485760 /dev/urandom > big; sha256sum big >&2; cat big; rm big";
    const r = await client.run({ argv: ["sh", "-c", script], cwd: dir });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.length, 10 * 1024 * 1024);
    assert.equal(r.stderr.toString().split(" ")[0], sha256(r.stdout));
  });

  it("streams stdin while the child floods stdout (no deadlock)", async () => {
    const input = randomBytes(8 * 1024 * 1024);
    const r = await client.run({ argv: ["cat"], stdin: input });
    assert.equal(sha256(r.stdout), sha256(input));
  });

  it("streams stdin from a Readable and a string", async () => {
    const chunks = ["a", "bc", "def"].map((s) => Buffer.from(s));
    const fromStream = await client.run({ argv: ["wc", "-c"], stdin: Readable.from(chunks) });
    assert.equal(fromStream.stdout.toString().trim(), "6");
    const fromString = await client.run({ argv: ["tr", "a-z", "A-Z"], stdin: "shout" });
    assert.equal(fromString.stdout.toString(), "SHOUT");
    const none = await client.run({ argv: ["cat"] });
    assert.equal(none.stdout.length, 0);
  });

  it("does not hang when the child ignores its stdin", async () => {
    const r = await client.run({ argv: ["true"], stdin: randomBytes(4 * 1024 * 1024) });
    assert.equal(r.exitCode, 0);
  });

  it("applies backpressure to a slow consumer without losing data", async () => {
    const proc = client.exec({ argv: ["head", "-c", "3000000", "/dev/zero"] });
    proc.stderr.resume();
    await sleep(200);
    // Nothing was read yet: the stream holds at most its buffer plus one socket read.
    assert.ok(proc.stdout.readableLength < 1024 * 1024, String(proc.stdout.readableLength));
    let total = 0;
    for await (const chunk of proc.stdout) total += (chunk as Buffer).length;
    assert.equal(total, 3_000_000);
    assert.equal((await proc.result).exitCode, 0);
  });

  it("applies env on top of the defaults", async () => {
    const r = await client.run({
      argv: ["sh", "-c", 'test -z "$TERM" && printf "%s|%s|%s" "$FOO" "$HOME" "$PATH"'],
      env: { FOO: "bar baz" },
    });
    assert.equal(
      r.stdout.toString(),
      `bar baz|${userInfo().homedir}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    );
    const path = await client.run({ argv: ["sh", "-c", 'echo "$PATH"'], env: { PATH: "/bin" } });
    assert.equal(path.stdout.toString(), "/bin\n");
  });

  it("applies cwd", async () => {
    const r = await client.run({ argv: ["pwd"], cwd: dir });
    assert.equal(r.stdout.toString().trim(), dir);
  });

  it("runs as another user when asked", { skip: process.getuid?.() !== 0 }, async () => {
    const r = await client.run({ argv: ["id", "-u"], user: "65534:65534", cwd: "/" });
    assert.equal(r.stdout.toString().trim(), "65534");
    await assert.rejects(
      client.run({ argv: ["id"], user: "no-such-user-x" }),
      isAgentError("NO_SUCH_USER"),
    );
  });

  it("enforces the timeout", async () => {
    const start = Date.now();
    const r = await client.run({ argv: ["sleep", "10"], timeoutMs: 200 });
    assert.deepEqual([r.exitCode, r.signal, r.timedOut], [null, "SIGKILL", true]);
    assert.ok(Date.now() - start < 3000);
  });

  it("delivers kill() to the whole process group", async () => {
    const proc = client.exec({ argv: ["sh", "-c", "sleep 30 & echo $!; wait"] });
    proc.stderr.resume();
    const bgPid = Number(await firstLine(proc.stdout));
    proc.stdout.resume();
    proc.kill("SIGTERM");
    const r = await proc.result;
    assert.equal(r.signal, "SIGTERM");
    assert.ok(await waitGone(bgPid), "background child survived");
  });

  it("kills the child when the host disconnects", async () => {
    const proc = client.exec({ argv: ["sh", "-c", "echo $$; exec sleep 30"] });
    proc.stderr.resume();
    const pid = Number(await firstLine(proc.stdout));
    assert.ok(pidAlive(pid));
    proc.abort();
    await assert.rejects(proc.result, (e) => isCorralError(e, "AGENT"));
    assert.ok(await waitGone(pid), "child survived the disconnect");
  });

  it("finishes even when a background grandchild keeps the pipes open", async () => {
    const start = Date.now();
    const r = await client.run({ argv: ["sh", "-c", "sleep 3 & echo done"] });
    assert.equal(r.stdout.toString(), "done\n");
    assert.ok(Date.now() - start < 2500, `took ${Date.now() - start} ms`);
  });

  it("fails with ENOENT for a missing program", async () => {
    const err = await client.run({ argv: ["no-such-program-xyz"] }).catch((e: unknown) => e);
    assert.ok(isAgentError("ENOENT")(err), String(err));
    assert.ok(isCorralError(err) && err.message.includes("no-such-program-xyz"));
    assert.ok(isCorralError(err) && err.hint?.includes("guest image"));
    await assert.rejects(
      client.run({ argv: ["true"], cwd: "/no/such/dir" }),
      isAgentError("ENOENT"),
    );
  });

  it("runs several commands concurrently", async () => {
    const start = Date.now();
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        client.run({ argv: ["sh", "-c", `sleep 0.3; echo ${i}`] }),
      ),
    );
    assert.deepEqual(
      runs.map((r) => r.stdout.toString()),
      runs.map((_, i) => `${i}\n`),
    );
    assert.ok(Date.now() - start < 2000, `took ${Date.now() - start} ms`);
  });

  it("caps buffered output in run()", async () => {
    await assert.rejects(
      client.run({ argv: ["head", "-c", "1000000", "/dev/zero"], maxOutputBytes: 1000 }),
      (e) => isCorralError(e, "AGENT") && /exceeded/.test(e.message),
    );
  });

  it("validates arguments before connecting", () => {
    const invalid = (e: unknown) => isCorralError(e, "INVALID_ARGUMENT");
    assert.throws(() => client.exec({ argv: [] }), invalid);
    assert.throws(() => client.exec({ argv: ["a\0b"] }), /argv\[0\]/);
    assert.throws(() => client.exec({ argv: ["x"], env: { "BAD-KEY": "1" } }), /env\.BAD-KEY/);
    assert.throws(() => client.exec({ argv: ["x"], env: { K: "a\0" } }), invalid);
    assert.throws(() => client.exec({ argv: ["x"], cwd: "relative" }), /cwd/);
    assert.throws(() => client.exec({ argv: ["x"], timeoutMs: -1 }), /timeoutMs/);
    assert.throws(() => client.exec({ argv: ["x"] }).kill("SIGBOGUS" as NodeJS.Signals), invalid);
  });
});

describe("agent: files", () => {
  it("round-trips a file with its mode", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const path = join(dir, "round.bin");
    assert.deepEqual(await client.writeFile(path, data, { mode: 0o600 }), { size: data.length });
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(sha256(await readFile(path)), sha256(data));
    assert.equal(sha256(await client.readFile(path)), sha256(data));
  });

  it("writes from a Readable and replaces atomically", async () => {
    const path = join(dir, "stream.txt");
    await writeFile(path, "old");
    const src = Readable.from([Buffer.from("new "), Buffer.from("content")]);
    assert.deepEqual(await client.writeFile(path, src), { size: 11 });
    assert.equal((await client.readFile(path)).toString(), "new content");
    assert.equal((await stat(path)).mode & 0o777, 0o644);
    assert.equal((await client.readFile("/proc/self/stat")).length > 0, true);
    assert.equal((await client.writeFile(join(dir, "empty"), Buffer.alloc(0))).size, 0);
    assert.equal((await client.readFile(join(dir, "empty"))).length, 0);
  });

  it("reports file errors", async () => {
    await assert.rejects(client.readFile(join(dir, "missing")), isAgentError("ENOENT"));
    await assert.rejects(client.readFile(dir), isAgentError("NOT_REGULAR"));
    await assert.rejects(
      client.writeFile(join(dir, "no", "such", "file"), randomBytes(300_000)),
      isAgentError("ENOENT"),
    );
    await assert.rejects(client.writeFile(dir, Buffer.from("x")), isAgentError("EISDIR"));
    await writeFile(join(dir, "big"), Buffer.alloc(100_000));
    await assert.rejects(
      client.readFile(join(dir, "big"), { maxBytes: 1000 }),
      (e) => isCorralError(e, "AGENT") && e.details?.maxBytes === 1000,
    );
    await assert.rejects(client.readFile("relative"), (e) => isCorralError(e, "INVALID_ARGUMENT"));
  });
});

describe("agent: bad requests", () => {
  const request = (entries: Array<[string, string]>) => encodeFrame("R", encodeKv(entries));

  it("answers garbage with BAD_REQUEST and keeps serving", async () => {
    const oversized = Buffer.from([0x52, 0x7f, 0xff, 0xff, 0xff]);
    const cases = [
      Buffer.from("GET / HTTP/1.1\r\n\r\n"),
      oversized,
      request([["op", "explode"]]),
      request([["arg", "x"]]),
      request([["op", "exec"]]),
      request([
        ["op", "ping"],
        ["version", "2"],
      ]),
      request([
        ["op", "ping"],
        ["bogus", "1"],
      ]),
      request([
        ["op", "exec"],
        ["arg", "true"],
        ["timeout_ms", "-5"],
      ]),
      request([
        ["op", "read_file"],
        ["path", "relative"],
      ]),
      encodeFrame("R", Buffer.from("op=ping")),
    ];
    for (const bytes of cases) {
      const frames = await rawExchange(bytes);
      assert.equal(frames.length, 1, bytes.toString());
      assert.equal(frames[0]?.type, "F");
      assert.match(frames[0]?.text ?? "", /^code=BAD_REQUEST\0message=/);
    }
    assert.equal((await client.ping()).protocol, "1");
  });

  it("rejects unexpected frames during exec and kills the child", async () => {
    const frames = await rawExchange(
      Buffer.concat([
        request([
          ["op", "exec"],
          ["arg", "sleep"],
          ["arg", "30"],
        ]),
        encodeFrame("I", Buffer.from("stdin was not requested")),
      ]),
    );
    assert.deepEqual(
      frames.map((f) => f.type),
      ["F"],
    );
    assert.match(frames[0]?.text ?? "", /BAD_REQUEST/);
  });
});

describe("agent tcp_connect (port forwards)", () => {
  it("carries bytes both ways and keeps half-closes", async () => {
    const server = createServer((conn) => {
      const chunks: Buffer[] = [];
      conn.on("data", (c: Buffer) => chunks.push(c));
      // Answer only after the client's EOF: proves the host's end() reached the guest side.
      conn.on("end", () => conn.end(`got ${sha256(Buffer.concat(chunks))}`));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    try {
      const stream = await client.tcpConnect(port);
      const payload = randomBytes(3 * 1024 * 1024 + 17);
      const reply: Buffer[] = [];
      stream.on("data", (c: Buffer) => reply.push(c));
      stream.end(payload);
      await once(stream, "end");
      assert.equal(Buffer.concat(reply).toString(), `got ${sha256(payload)}`);
    } finally {
      server.close();
    }
  });

  it("reports a refused port with the guest's errno", async () => {
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    server.close();
    await assert.rejects(client.tcpConnect(port), (err: unknown) => {
      assert.ok(isCorralError(err, "AGENT"));
      assert.equal(err.details?.guestCode, "ECONNREFUSED");
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
  });

  it("refuses bad ports and hosts before connecting", async () => {
    await assert.rejects(client.tcpConnect(0), /not a TCP port/);
    await assert.rejects(client.tcpConnect(70000), /not a TCP port/);
    await assert.rejects(client.tcpConnect(80, { host: "example.com" }), /not an IPv4/);
    const frames = await rawExchange(
      encodeFrame(
        "R",
        encodeKv([
          ["op", "tcp_connect"],
          ["port", "99999"],
        ]),
      ),
    );
    assert.equal(frames[0]?.type, "F");
    assert.match(frames[0]?.text ?? "", /BAD_REQUEST/);
  });
});

describe("agent: kept connections (keep=1)", () => {
  const request = (entries: Array<[string, string]>) => encodeFrame("R", encodeKv(entries));
  const handlerPid = async (c: AgentClient) =>
    Number((await c.run({ argv: ["sh", "-c", "echo $PPID"] })).stdout.toString().trim());

  it("serves a series of pings and execs from one warm guest handler", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      const first = await handlerPid(kept);
      await kept.ping();
      const r = await kept.run({ argv: ["sh", "-c", "echo out; echo err >&2; exit 3"] });
      assert.equal(r.exitCode, 3);
      assert.equal(r.stdout.toString(), "out\n");
      assert.equal(r.stderr.toString(), "err\n");
      await kept.setTime(Date.now());
      assert.equal(await handlerPid(kept), first);
      // Without keepAlive every operation gets a handler of its own.
      assert.notEqual(await handlerPid(client), await handlerPid(client));
    } finally {
      kept.close();
    }
  });

  it("closes after a failure, and the next operation gets a new handler", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      const first = await handlerPid(kept);
      await assert.rejects(kept.run({ argv: ["no-such-program-corral"] }), isAgentError("ENOENT"));
      assert.ok(await waitGone(first), "the failed handler exits");
      const second = await handlerPid(kept);
      assert.notEqual(second, first);
    } finally {
      kept.close();
    }
  });

  it("recovers when the idle guest handler is gone", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      const first = await handlerPid(kept);
      process.kill(first, "SIGKILL");
      assert.ok(await waitGone(first));
      assert.equal((await kept.ping()).protocol, "1");
      const second = await handlerPid(kept);
      assert.notEqual(second, first);
      assert.equal((await kept.run({ argv: ["true"] })).exitCode, 0);
    } finally {
      kept.close();
    }
  });

  it("closes idle connections after idleMs, ending their guest handlers", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 100, max: 2 } });
    const pid = await handlerPid(kept);
    assert.ok(pidAlive(pid), "the handler waits for the next request");
    assert.ok(await waitGone(pid, 3000), "the handler exits once the host closed");
    kept.close();
  });

  it("answers pipelined kept requests in order and closes after one without keep", async () => {
    const keep: Array<[string, string]> = [["keep", "1"]];
    const frames = await rawExchange(
      Buffer.concat([
        request([["op", "ping"], ...keep]),
        request([["op", "set_time"], ...keep, ["time_ms", String(Date.now())]]),
        request([["op", "ping"]]),
        request([["op", "ping"]]),
      ]),
    );
    assert.deepEqual(
      frames.map((f) => f.type),
      ["P", "Z", "P"],
    );
  });

  it("refuses keep with ops that change or take over the handler", async () => {
    for (const op of [
      [
        ["op", "read_file"],
        ["path", "/etc/hostname"],
      ],
      [
        ["op", "tcp_connect"],
        ["port", "9"],
      ],
    ] as Array<Array<[string, string]>>) {
      const frames = await rawExchange(request([...op, ["keep", "1"]]));
      assert.equal(frames.length, 1);
      assert.match(frames[0]?.text ?? "", /^code=BAD_REQUEST\0message=keep=1 is only allowed/);
    }
    const bad = await rawExchange(
      request([
        ["op", "ping"],
        ["keep", "yes"],
      ]),
    );
    assert.match(bad[0]?.text ?? "", /keep must be 0 or 1/);
  });

  it("a request's HOME replaces the default, on kept and fresh connections alike", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      for (const c of [kept, kept, client]) {
        const r = await c.run({ argv: ["sh", "-c", 'echo "$HOME"'], env: { HOME: "/tmp" } });
        assert.equal(r.exitCode, 0);
        assert.equal(r.stdout.toString(), "/tmp\n");
      }
    } finally {
      kept.close();
    }
  });

  it("an exec with stdin never leaves frames behind for the next operation", async () => {
    const kept = new AgentClient(connectUnix, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      for (let i = 0; i < 3; i++) {
        // The command exits before reading its stdin: the agent stops reading the socket.
        const r = await kept.run({ argv: ["sleep", "0.2"], stdin: Buffer.alloc(3 * 1024 * 1024) });
        assert.equal(r.exitCode, 0);
        assert.equal((await kept.run({ argv: ["echo", "next"] })).stdout.toString(), "next\n");
        await kept.ping();
      }
    } finally {
      kept.close();
    }
  });

  it("falls back without keep against an agent that refuses the key (before 0.2.0)", async () => {
    const oldPath = join(dir, "old-agent.sock");
    const requests: string[] = [];
    const server = createServer((conn) => {
      const decoder = new FrameDecoder("R");
      conn.on("error", () => {});
      conn.on("data", (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          const text = frame.payload.toString();
          requests.push(text);
          const reply = text.includes("keep=1")
            ? encodeFrame(
                "F",
                encodeKv([
                  ["code", "BAD_REQUEST"],
                  ["message", "unknown request key"],
                ]),
              )
            : text.includes("op=ping")
              ? encodeFrame(
                  "P",
                  encodeKv([
                    ["version", "0.1.0"],
                    ["kernel", "k"],
                    ["uptime_ms", "1"],
                    ["hostname", "h"],
                  ]),
                )
              : text.includes("op=set_time")
                ? encodeFrame("Z", encodeKv([["time_ms", /time_ms=(\d+)/.exec(text)?.[1] ?? "0"]]))
                : encodeFrame("X", encodeKv([["code", "0"]]));
          conn.end(reply);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(oldPath, resolve));
    const connectOld = () => connectTo(oldPath);
    const old = new AgentClient(connectOld, { keepAlive: { idleMs: 10_000, max: 2 } });
    try {
      assert.equal((await old.run({ argv: ["true"] })).exitCode, 0);
      assert.equal((await old.ping()).version, "0.1.0");
      await old.setTime(1_700_000_000_000);
      assert.equal((await old.run({ argv: ["true"] })).exitCode, 0);
      // One refused request, then never again.
      assert.equal(requests.filter((r) => r.includes("keep=1")).length, 1);
      assert.equal(requests.length, 5);
    } finally {
      old.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("gives commands default dispositions even for signals the agent inherited as ignored", async () => {
    const binary = await buildAgent();
    const path2 = join(dir, "agent-ignoring.sock");
    const ignoring = spawn(
      "sh",
      ["-c", 'trap "" HUP INT USR1; exec "$0" --listen-unix "$1"', binary, path2],
      {
        stdio: "ignore",
      },
    );
    const connect2 = () => connectTo(path2);
    try {
      let c2: AgentClient | undefined;
      for (let i = 0; i < 200 && c2 === undefined; i++) {
        try {
          (await connect2()).destroy();
          c2 = new AgentClient(connect2);
        } catch {
          await sleep(10);
        }
      }
      assert.ok(c2, "second agent listens");
      const r = await c2.run({ argv: ["sh", "-c", "grep -E '^Sig(Ign|Blk):' /proc/self/status"] });
      assert.equal(r.stdout.toString(), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    } finally {
      ignoring.kill("SIGKILL");
    }
  });
});
