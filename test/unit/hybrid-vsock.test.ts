import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { connectVsock } from "../../src/protocols/hybrid-vsock/connect.js";

let dir: string;
let counter = 0;

/** A fake hybrid-vsock endpoint: `onConnect` gets the peer and the port it asked for. */
async function fakeVsock(onConnect: (peer: Socket, port: number) => void): Promise<{
  path: string;
  server: Server;
}> {
  const path = join(dir, `v${counter++}.sock`);
  const server = createServer((peer) => {
    peer.on("error", () => {});
    let buf = "";
    const onData = (d: Buffer) => {
      buf += d.toString("latin1");
      const m = /^CONNECT (\d+)\n/.exec(buf);
      if (m === null) return;
      peer.off("data", onData);
      onConnect(peer, Number(m[1]));
    };
    peer.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server };
}

function readAll(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    sock.on("data", (d: Buffer) => {
      out += d.toString();
    });
    sock.on("end", () => resolve(out));
    sock.on("error", reject);
  });
}

function reason(err: unknown): unknown {
  return isCorralError(err) ? err.details?.reason : undefined;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "corral-vsock-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("connectVsock", () => {
  test("handshakes and hands over a stream that echoes", async () => {
    const { path, server } = await fakeVsock((peer, port) => {
      peer.write(`OK ${port + 1000}\n`);
      peer.pipe(peer);
    });
    const sock = await connectVsock(path, 1024);
    const all = readAll(sock);
    sock.end("hello guest");
    assert.equal(await all, "hello guest");
    server.close();
  });

  test("keeps bytes that arrive in the same chunk as OK", async () => {
    const { path, server } = await fakeVsock((peer) => {
      peer.end("OK 99\nREADY from guest\n");
    });
    const sock = await connectVsock(path, 52);
    assert.equal(await readAll(sock), "READY from guest\n");
    server.close();
  });

  test("keeps early bytes for async iteration too", async () => {
    const { path, server } = await fakeVsock((peer) => {
      peer.write("OK 1");
      setTimeout(() => peer.end("\nabc"), 20);
    });
    const sock = await connectVsock(path, 52);
    let out = "";
    for await (const chunk of sock) out += (chunk as Buffer).toString();
    assert.equal(out, "abc");
    server.close();
  });

  test("a missing socket is unavailable", async () => {
    await assert.rejects(connectVsock(join(dir, "nope.sock"), 1), (err: unknown) => {
      assert.ok(isCorralError(err, "VSOCK"));
      assert.equal(reason(err), "unavailable");
      return true;
    });
  });

  test("a socket file nobody listens on is unavailable", async () => {
    const path = join(dir, "stale.sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    // Closing a listening unix server unlinks the path; recreate it as a dead socket.
    await new Promise<void>((resolve) => server.close(() => resolve()));
    writeFileSync(path, "");
    await assert.rejects(connectVsock(path, 1), (err) => reason(err) === "unavailable");
  });

  test("a peer closing before OK means the guest is not listening", async () => {
    const { path, server } = await fakeVsock((peer) => peer.end());
    await assert.rejects(connectVsock(path, 1024), (err: unknown) => {
      assert.ok(isCorralError(err, "VSOCK"));
      assert.equal(reason(err), "not-listening");
      assert.match(err.message, /closed before OK/);
      return true;
    });
    server.close();
  });

  test("a peer resetting before OK means the guest is not listening", async () => {
    // Unix sockets reset when closed with unread data: never read the CONNECT line.
    const path = join(dir, "reset.sock");
    const server = createServer((peer) => {
      peer.pause();
      setTimeout(() => peer.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await assert.rejects(connectVsock(path, 1024), (err) => reason(err) === "not-listening");
    server.close();
  });

  test("a bad reply is a protocol error", async () => {
    const { path, server } = await fakeVsock((peer) => peer.write("NOPE 12\n"));
    await assert.rejects(connectVsock(path, 1024), (err: unknown) => {
      assert.ok(isCorralError(err, "VSOCK"));
      assert.equal(reason(err), "protocol");
      assert.match(err.message, /NOPE 12/);
      return true;
    });
    server.close();
  });

  test("an overlong reply line is a protocol error", async () => {
    const { path, server } = await fakeVsock((peer) => peer.write("O".repeat(100)));
    await assert.rejects(connectVsock(path, 1024), (err) => reason(err) === "protocol");
    server.close();
  });

  test("a silent peer times out", async () => {
    const { path, server } = await fakeVsock(() => {});
    await assert.rejects(connectVsock(path, 1024, { timeoutMs: 50 }), (err: unknown) => {
      assert.ok(isCorralError(err, "TIMEOUT"));
      assert.equal(reason(err), "timeout");
      return true;
    });
    server.close();
  });

  test("rejects an invalid port", async () => {
    await assert.rejects(connectVsock("/x", -1), (err) => isCorralError(err, "INVALID_ARGUMENT"));
  });
});
