import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { QmpClient } from "../../src/drivers/qemu/qmp.js";
import { isCorralError } from "../../src/errors.js";

const GREETING = {
  QMP: {
    version: { qemu: { micro: 3, minor: 2, major: 7 }, package: "Debian 1:7.2+dfsg-7" },
    capabilities: ["oob"],
  },
};

type Handler = (peer: Socket, msg: Record<string, unknown>) => void;

let dir: string;
let counter = 0;

/** A fake QMP server: sends `greeting`, answers qmp_capabilities, hands the rest to `handler`. */
async function fakeQmp(
  handler: Handler,
  greeting: unknown = GREETING,
): Promise<{ path: string; server: Server; peers: Socket[] }> {
  const path = join(dir, `qmp-${counter++}.sock`);
  const peers: Socket[] = [];
  const server = createServer((peer) => {
    peers.push(peer);
    peer.on("error", () => {});
    peer.write(`${typeof greeting === "string" ? greeting : JSON.stringify(greeting)}\r\n`);
    let buf = "";
    peer.on("data", (d) => {
      buf += d.toString();
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (msg.execute === "qmp_capabilities") {
          peer.write(`${JSON.stringify({ return: {}, id: msg.id })}\r\n`);
        } else {
          handler(peer, msg);
        }
        nl = buf.indexOf("\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server, peers };
}

function reply(peer: Socket, value: unknown): void {
  peer.write(`${JSON.stringify(value)}\r\n`);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "corral-qmp-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("QmpClient", () => {
  test("reads the greeting, negotiates and exposes the version", async () => {
    const { path, server } = await fakeQmp((peer, msg) =>
      reply(peer, { return: { status: "running", running: true }, id: msg.id }),
    );
    const qmp = await QmpClient.connect(path, { timeoutMs: 2000 });
    assert.deepEqual(qmp.version, {
      major: 7,
      minor: 2,
      micro: 3,
      package: "Debian 1:7.2+dfsg-7",
    });
    const status = await qmp.execute<{ status: string }>("query-status");
    assert.equal(status.status, "running");
    await qmp.close();
    assert.equal(qmp.closeError, undefined);
    server.close();
  });

  test("matches out-of-order replies by id", async () => {
    const held: Record<string, unknown>[] = [];
    const { path, server } = await fakeQmp((peer, msg) => {
      held.push(msg);
      if (held.length === 3) {
        for (const m of held.reverse()) {
          reply(peer, { return: { echo: (m.arguments as { n: number }).n }, id: m.id });
        }
      }
    });
    const qmp = await QmpClient.connect(path);
    const results = await Promise.all(
      [1, 2, 3].map((n) => qmp.execute<{ echo: number }>("echo", { n })),
    );
    assert.deepEqual(
      results.map((r) => r.echo),
      [1, 2, 3],
    );
    await qmp.close();
    server.close();
  });

  test("an error reply rejects with a QMP CorralError carrying class and command", async () => {
    const { path, server } = await fakeQmp((peer, msg) =>
      reply(peer, {
        error: { class: "CommandNotFound", desc: "The command bogus has not been found" },
        id: msg.id,
      }),
    );
    const qmp = await QmpClient.connect(path);
    await assert.rejects(qmp.execute("bogus"), (err: unknown) => {
      assert.ok(isCorralError(err, "VMM_CONTROL"));
      assert.equal(err.message, "The command bogus has not been found");
      assert.deepEqual(err.details, { class: "CommandNotFound", command: "bogus" });
      return true;
    });
    await qmp.close();
    server.close();
  });

  test("emits events and waitForEvent resolves on the named one", async () => {
    const { path, server } = await fakeQmp((peer, msg) => {
      reply(peer, { return: {}, id: msg.id });
      reply(peer, {
        event: "STOP",
        data: {},
        timestamp: { seconds: 1700000000, microseconds: 5 },
      });
      reply(peer, {
        event: "SHUTDOWN",
        data: { guest: true, reason: "guest-shutdown" },
        timestamp: { seconds: 1700000001, microseconds: 6 },
      });
    });
    const qmp = await QmpClient.connect(path);
    const seen: string[] = [];
    qmp.on("event", (ev) => seen.push(ev.event));
    const shutdown = qmp.waitForEvent("SHUTDOWN", { timeoutMs: 2000 });
    await qmp.execute("stop");
    const ev = await shutdown;
    assert.deepEqual(ev.data, { guest: true, reason: "guest-shutdown" });
    assert.deepEqual(ev.timestamp, { seconds: 1700000001, microseconds: 6 });
    assert.deepEqual(seen, ["STOP", "SHUTDOWN"]);
    await qmp.close();
    server.close();
  });

  test("command and event timeouts reject with TIMEOUT", async () => {
    const { path, server } = await fakeQmp(() => {});
    const qmp = await QmpClient.connect(path);
    await assert.rejects(qmp.execute("query-status", undefined, { timeoutMs: 50 }), (err) =>
      isCorralError(err, "TIMEOUT"),
    );
    await assert.rejects(qmp.waitForEvent("RESUME", { timeoutMs: 50 }), (err) =>
      isCorralError(err, "TIMEOUT"),
    );
    await qmp.close();
    server.close();
  });

  test("a peer closing mid-command rejects every pending command and resolves closed", async () => {
    let n = 0;
    const { path, server } = await fakeQmp((peer) => {
      if (++n === 2) peer.destroy();
    });
    const qmp = await QmpClient.connect(path);
    const a = qmp.execute("query-status");
    const b = qmp.execute("cont");
    const waiting = qmp.waitForEvent("SHUTDOWN");
    for (const p of [a, b, waiting]) {
      await assert.rejects(p, (err: unknown) => {
        assert.ok(isCorralError(err, "VMM_CONTROL"));
        assert.match(err.message, /QEMU closed the QMP connection/);
        return true;
      });
    }
    await qmp.closed;
    assert.ok(isCorralError(qmp.closeError, "VMM_CONTROL"));
    await assert.rejects(qmp.execute("query-status"), /QEMU closed the QMP connection/);
    server.close();
  });

  test("an oversized line ends the connection with a clear error", async () => {
    const { path, server } = await fakeQmp((peer) => {
      peer.write(`{"return": "${"x".repeat(4096)}`);
    });
    const qmp = await QmpClient.connect(path, { maxLineBytes: 1024 });
    await assert.rejects(qmp.execute("query-status"), /longer than 1024 bytes/);
    await qmp.closed;
    server.close();
  });

  test("a non-JSON line ends the connection with a clear error", async () => {
    const { path, server } = await fakeQmp((peer) => {
      peer.write("this is not json\r\n");
    });
    const qmp = await QmpClient.connect(path);
    await assert.rejects(qmp.execute("query-status"), /not JSON/);
    await qmp.closed;
    server.close();
  });

  test("rejects a peer that does not greet like QMP", async () => {
    const { path, server } = await fakeQmp(() => {}, { hello: "world" });
    await assert.rejects(QmpClient.connect(path), (err: unknown) => {
      assert.ok(isCorralError(err, "VMM_CONTROL"));
      assert.match(err.message, /did not send a QMP greeting/);
      return true;
    });
    server.close();
  });

  test("a silent peer times out the handshake", async () => {
    const path = join(dir, "silent.sock");
    const server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await assert.rejects(QmpClient.connect(path, { timeoutMs: 100 }), (err) =>
      isCorralError(err, "TIMEOUT"),
    );
    server.close();
  });

  test("a missing socket fails with QMP naming the path", async () => {
    const path = join(dir, "missing.sock");
    await assert.rejects(QmpClient.connect(path), (err: unknown) => {
      assert.ok(isCorralError(err, "VMM_CONTROL"));
      assert.ok(err.message.includes(path));
      assert.equal(err.details?.errno, "ENOENT");
      return true;
    });
  });
});
