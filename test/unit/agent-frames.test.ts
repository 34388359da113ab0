import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { AgentClient } from "../../src/protocols/agent/client.js";
import { guestFailure } from "../../src/protocols/agent/connection.js";
import {
  decodeKv,
  decodeKvMap,
  encodeFrame,
  encodeKv,
  FrameDecoder,
  MAX_PAYLOAD,
  parseUint,
} from "../../src/protocols/agent/frames.js";
import { signalName, signalNumber } from "../../src/protocols/agent/signals.js";

const isProtocolError = (err: unknown) => isCorralError(err, "AGENT_PROTOCOL");

function kv(entries: Record<string, string>): Buffer {
  return encodeKv(Object.entries(entries));
}

describe("agent frame codec", () => {
  it("encodes type, big-endian length and payload", () => {
    const frame = encodeFrame("1", Buffer.from("hey"));
    assert.deepEqual([...frame], [0x31, 0, 0, 0, 3, 0x68, 0x65, 0x79]);
    assert.equal(encodeFrame("E").length, 5);
  });

  it("decodes frames split at every byte boundary", () => {
    const stream = Buffer.concat([
      encodeFrame("1", Buffer.from("out")),
      encodeFrame("2", Buffer.alloc(0)),
      encodeFrame("X", kv({ code: "0" })),
    ]);
    for (let split = 0; split <= stream.length; split++) {
      const decoder = new FrameDecoder("12X");
      const frames = [
        ...decoder.push(stream.subarray(0, split)),
        ...decoder.push(stream.subarray(split)),
      ];
      assert.deepEqual(
        frames.map((f) => [f.type, f.payload.toString()]),
        [
          ["1", "out"],
          ["2", ""],
          ["X", "code=0\0"],
        ],
      );
      assert.equal(decoder.pending, 0);
    }
  });

  it("decodes byte by byte", () => {
    const stream = encodeFrame("D", Buffer.alloc(70_000, 7));
    const decoder = new FrameDecoder("D");
    const frames = [];
    for (const byte of stream) frames.push(...decoder.push(Buffer.from([byte])));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.payload.length, 70_000);
  });

  it("rejects frame types the operation does not expect", () => {
    assert.throws(
      () => new FrameDecoder("P").push(encodeFrame("1", Buffer.from("x"))),
      isProtocolError,
    );
    assert.throws(
      () => new FrameDecoder("12X").push(Buffer.from([0, 0, 0, 0, 0])),
      isProtocolError,
    );
  });

  it("rejects oversized payloads from the header alone", () => {
    const header = Buffer.from([0x31, 0, 0, 0, 0]);
    header.writeUInt32BE(MAX_PAYLOAD + 1, 1);
    assert.throws(() => new FrameDecoder("1").push(header), isProtocolError);
    header.writeUInt32BE(0xffffffff, 1);
    assert.throws(() => new FrameDecoder("1").push(header), isProtocolError);
  });

  it("round-trips key=value lists and keeps values verbatim", () => {
    const payload = encodeKv([
      ["arg", "a=b=c"],
      ["arg", ""],
      ["env", "X=ü"],
    ]);
    assert.deepEqual(decodeKv(payload), [
      ["arg", "a=b=c"],
      ["arg", ""],
      ["env", "X=ü"],
    ]);
    assert.throws(() => encodeKv([["arg", "a\0b"]]), isCorralError);
  });

  it("rejects malformed key=value lists", () => {
    const bad = ["code=1", "=1\0", "noequals\0", "Code=1\0", "k-y=1\0", "a=1\0\0", "\0"];
    for (const text of bad) {
      assert.throws(() => decodeKv(Buffer.from(text)), isProtocolError, JSON.stringify(text));
    }
    assert.throws(() => decodeKvMap(Buffer.from("a=1\0a=2\0")), isProtocolError);
    assert.deepEqual(decodeKv(Buffer.alloc(0)), []);
  });

  it("parses only plain decimal numbers in range", () => {
    assert.equal(parseUint("42", 255, "n"), 42);
    for (const text of ["", "-1", "+1", " 1", "1.5", "0x10", "256", "1e3", "99999999999999999"]) {
      assert.throws(() => parseUint(text, 255, "n"), isProtocolError, text);
    }
  });

  it("turns F frames into AGENT errors and checks them", () => {
    const err = guestFailure({
      type: "F",
      payload: kv({ code: "ENOENT", message: 'exec "nope": No such file', stage: "exec" }),
    });
    assert.equal(err.code, "AGENT");
    assert.deepEqual(err.details, { guestCode: "ENOENT", stage: "exec" });
    assert.match(err.hint ?? "", /command exists/);
    const hostile: Array<Record<string, string>> = [
      { code: "enoent", message: "x" },
      { code: "ENOENT" },
      { message: "x" },
    ];
    for (const fields of hostile) {
      assert.throws(() => guestFailure({ type: "F", payload: kv(fields) }), isProtocolError);
    }
  });

  it("maps Linux signals independently of the host OS", () => {
    assert.equal(signalNumber("SIGKILL"), 9);
    assert.equal(signalNumber("SIGUSR1"), 10);
    assert.equal(signalNumber("term"), 15);
    assert.equal(signalNumber(2), 2);
    assert.equal(signalName(15), "SIGTERM");
    assert.equal(signalName(35), "SIGRTMIN+1");
    assert.throws(
      () => signalNumber("SIGNOPE"),
      (e) => isCorralError(e, "INVALID_ARGUMENT"),
    );
    assert.throws(
      () => signalNumber(0),
      (e) => isCorralError(e, "INVALID_ARGUMENT"),
    );
  });
});

/** A fake agent that answers every connection with canned bytes. */
describe("AgentClient against a hostile agent", () => {
  let dir: string;
  let server: Server;
  let reply: Buffer = Buffer.alloc(0);
  const sockets = new Set<Socket>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-agent-fake-"));
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      socket.once("data", () => socket.end(reply));
    });
    await new Promise<void>((resolve) => server.listen(join(dir, "agent.sock"), resolve));
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const client = () =>
    new AgentClient(
      () =>
        new Promise((resolve, reject) => {
          const socket = createConnection(join(dir, "agent.sock"));
          socket.once("connect", () => resolve(socket));
          socket.once("error", reject);
        }),
    );

  it("accepts a well-formed ping reply", async () => {
    reply = encodeFrame("P", kv({ version: "9", kernel: "6.1", uptime_ms: "5", hostname: "h" }));
    const pong = await client().ping();
    assert.deepEqual(pong, {
      version: "9",
      protocol: "1",
      kernel: "6.1",
      uptimeMs: 5,
      hostname: "h",
    });
  });

  it("rejects replies that break the protocol", async () => {
    const cases: Array<[string, Buffer]> = [
      ["stdout frame in ping", encodeFrame("1", Buffer.from("x"))],
      [
        "uptime not numeric",
        encodeFrame("P", kv({ version: "1", kernel: "k", uptime_ms: "x", hostname: "h" })),
      ],
      ["missing kernel", encodeFrame("P", kv({ version: "1", uptime_ms: "1", hostname: "h" }))],
      ["garbage", Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")],
    ];
    for (const [name, bytes] of cases) {
      reply = bytes;
      await assert.rejects(client().ping({ timeoutMs: 2000 }), isProtocolError, name);
    }
  });

  it("rejects malformed exit frames", async () => {
    const cases = [
      kv({ code: "abc" }),
      kv({ code: "256" }),
      kv({ code: "1", signal: "9" }),
      kv({ signal: "99" }),
      kv({ code: "0", timeout: "yes" }),
      kv({ code: "0", extra: "1" }),
      Buffer.from("code=0"),
    ];
    for (const payload of cases) {
      reply = encodeFrame("X", payload);
      const proc = client().exec({ argv: ["true"] });
      proc.stdout.resume();
      proc.stderr.resume();
      await assert.rejects(proc.result, isProtocolError, payload.toString());
    }
  });

  it("reports a connection closed before the exit status", async () => {
    reply = encodeFrame("1", Buffer.from("partial"));
    const err = await client()
      .run({ argv: ["x"] })
      .catch((e: unknown) => e);
    assert.ok(isCorralError(err, "AGENT"), String(err));
  });

  it("rejects a file size that does not match the data", async () => {
    reply = Buffer.concat([
      encodeFrame("D", Buffer.from("abc")),
      encodeFrame("Z", kv({ size: "4" })),
    ]);
    await assert.rejects(client().readFile("/x"), isProtocolError);
  });

  it("times out a silent agent", async () => {
    reply = Buffer.alloc(0);
    const silent = new AgentClient(
      () =>
        new Promise((resolve) => {
          const socket = createConnection(join(dir, "agent.sock"));
          socket.once("connect", () => resolve(socket));
          socket.on("data", () => {});
        }),
    );
    // The fake ends the connection after the request; a never-answering one must time out too.
    const never = new AgentClient(() => new Promise(() => {}));
    await assert.rejects(never.ping({ timeoutMs: 50 }), (e) => isCorralError(e, "TIMEOUT"));
    await assert.rejects(silent.ping({ timeoutMs: 2000 }), (e) => isCorralError(e, "AGENT"));
  });
});
