import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync, linkSync, mkdtempSync, rmSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isCorralError } from "../../src/errors.js";
import { EthernetSwitch } from "../../src/net/switch/ethernet-switch.js";
import {
  encodeFrame,
  FrameDecoder,
  FrameError,
  MAX_FRAME_LENGTH,
  MIN_FRAME_LENGTH,
} from "../../src/net/switch/frames.js";
import { type PortLinkState, SwitchRegistry } from "../../src/net/switch/registry.js";

let dir: string;
let counter = 0;
const cleanups: (() => void)[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), "corral-switch-"));
});
after(() => {
  for (const fn of cleanups.splice(0)) fn();
  rmSync(dir, { recursive: true, force: true });
});

const sockPath = () => join(dir, `s${counter++}.sock`);

/** A MAC from its last byte: 02:00:00:00:00:NN (locally administered unicast). */
const mac = (n: number) => Buffer.from([0x02, 0, 0, 0, 0, n]);
const BROADCAST = Buffer.alloc(6, 0xff);
const MULTICAST = Buffer.from([0x01, 0x00, 0x5e, 0, 0, 1]);

/** An Ethernet frame (EtherType 0x88b5, local experimental) whose payload names it. */
function frame(dst: Buffer, src: Buffer, tag: string, size = 60): Buffer {
  const f = Buffer.alloc(Math.max(size, 14 + tag.length));
  dst.copy(f, 0);
  src.copy(f, 6);
  f.writeUInt16BE(0x88b5, 12);
  f.write(tag, 14, "latin1");
  return f;
}
const tagOf = (f: Buffer) => f.subarray(14).toString("latin1").replace(/\0+$/, "");

/** The VM's side of a port: decodes what the switch sends, sends frames to it. */
class Peer {
  readonly frames: Buffer[] = [];
  readonly decoder = new FrameDecoder();
  closed = false;
  #waiters: (() => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      for (const f of this.decoder.push(d)) this.frames.push(Buffer.from(f));
      this.#wake();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
  }
  #wake() {
    for (const w of this.#waiters.splice(0)) w();
  }
  send(f: Buffer) {
    this.socket.write(encodeFrame(f));
  }
  tags(): string[] {
    return this.frames.map(tagOf);
  }
  async until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), sleep(50)]);
    }
  }
  waitTag(tag: string): Promise<void> {
    return this.until(() => this.tags().includes(tag), `frame ${tag}`);
  }
  waitClosed(): Promise<void> {
    return this.until(() => this.closed, "close");
  }
}

/** A connected unix socket pair: [the switch's end, the VM's end]. */
async function socketPair(): Promise<[Socket, Socket]> {
  const path = sockPath();
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const client = createConnection(path);
  await once(client, "connect");
  const [serverSide] = await accepted;
  server.close();
  cleanups.push(() => {
    serverSide.destroy();
    client.destroy();
  });
  return [serverSide, client];
}

async function port(sw: EthernetSwitch, id: string): Promise<Peer> {
  const [switchEnd, vmEnd] = await socketPair();
  sw.attach(id, switchEnd);
  return new Peer(vmEnd);
}

/**
 * Ordering barrier: frames from one sender reach each port in order, so once `peer` gets a
 * broadcast that `from` sent last, it has got everything `from` sent before it.
 */
let barriers = 0;
async function barrier(from: Peer, srcMac: Buffer, ...peers: Peer[]): Promise<void> {
  const tag = `barrier-${barriers++}`;
  from.send(frame(BROADCAST, srcMac, tag));
  for (const p of peers) await p.waitTag(tag);
}
const dataTags = (p: Peer) => p.tags().filter((t) => !t.startsWith("barrier-"));

describe("frames", () => {
  const f1 = frame(mac(1), mac(2), "one");
  const f2 = frame(mac(3), mac(4), "two", 1514);
  const f3 = frame(mac(5), mac(6), "", MIN_FRAME_LENGTH);
  const stream = Buffer.concat([encodeFrame(f1), encodeFrame(f2), encodeFrame(f3)]);

  test("decodes several frames from one chunk", () => {
    const out = new FrameDecoder().push(stream);
    assert.deepEqual(out, [f1, f2, f3]);
  });

  test("decodes across every chunk boundary", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      assert.deepEqual(out, [f1, f2, f3], `cut at ${cut}`);
      assert.equal(d.bufferedBytes, 0);
    }
    const d = new FrameDecoder();
    const out: Buffer[] = [];
    for (const byte of stream) out.push(...d.push(Buffer.from([byte])));
    assert.deepEqual(out, [f1, f2, f3]);
  });

  test("frames returned are not overwritten by later input", () => {
    const d = new FrameDecoder();
    const enc = encodeFrame(f1);
    const first = d.push(enc.subarray(0, 10));
    assert.equal(first.length, 0);
    const [got] = d.push(enc.subarray(10));
    d.push(encodeFrame(f2).subarray(0, 30));
    assert.deepEqual(got, f1);
  });

  test("a length below 14 or above the maximum is an error, and stays one", () => {
    for (const bad of [0, 13, MAX_FRAME_LENGTH + 1, 0xffffffff]) {
      const d = new FrameDecoder();
      const header = Buffer.alloc(4);
      header.writeUInt32BE(bad);
      assert.throws(
        () => d.push(Buffer.concat([encodeFrame(f1), header])),
        (e) => e instanceof FrameError && e.length === bad && e.frames.length === 1,
      );
      assert.throws(
        () => d.push(encodeFrame(f1)),
        (e) => e instanceof FrameError && e.frames.length === 0,
      );
    }
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_LENGTH);
    const d = new FrameDecoder();
    assert.deepEqual(d.push(header), []);
    assert.deepEqual(d.push(Buffer.alloc(MAX_FRAME_LENGTH - 1)), []);
    assert.equal(d.bufferedBytes, MAX_FRAME_LENGTH - 1);
    assert.equal(d.push(Buffer.alloc(1))[0]?.length, MAX_FRAME_LENGTH);
  });

  test("encode refuses what decode would refuse", () => {
    assert.throws(() => encodeFrame(Buffer.alloc(13)), FrameError);
    assert.throws(() => encodeFrame(Buffer.alloc(MAX_FRAME_LENGTH + 1)), FrameError);
    assert.equal(encodeFrame(f3).readUInt32BE(0), MIN_FRAME_LENGTH);
  });
});

describe("EthernetSwitch", () => {
  const A = mac(0xa);
  const B = mac(0xb);
  const C = mac(0xc);

  async function threePorts(options?: ConstructorParameters<typeof EthernetSwitch>[1]) {
    const sw = new EthernetSwitch("lab", options);
    cleanups.push(() => sw.close());
    const a = await port(sw, "a");
    const b = await port(sw, "b");
    const c = await port(sw, "c");
    return { sw, a, b, c };
  }

  test("floods broadcast, multicast and unknown unicast to every other port", async () => {
    const { sw, a, b, c } = await threePorts();
    a.send(frame(BROADCAST, A, "bcast"));
    a.send(frame(MULTICAST, A, "mcast"));
    a.send(frame(B, A, "unknown-b"));
    await barrier(a, A, b, c);
    assert.deepEqual(dataTags(b), ["bcast", "mcast", "unknown-b"]);
    assert.deepEqual(dataTags(c), ["bcast", "mcast", "unknown-b"]);
    await barrier(b, B, a);
    assert.deepEqual(dataTags(a), [], "nothing goes back out of the ingress port");
    const stats = sw.stats();
    assert.equal(stats.ports.a?.rxFrames, 4);
    assert.equal(stats.ports.b?.txFrames, 4);
    assert.equal(stats.ports.b?.txBytes, 4 * 60);
    assert.equal(stats.ports.a?.txFrames, 1);
    assert.equal(stats.macs, 2);
  });

  test("learns source MACs and then sends unicast to its port only", async () => {
    const { sw, a, b, c } = await threePorts();
    await barrier(a, A, b, c);
    b.send(frame(A, B, "b-to-a"));
    await barrier(b, B, a, c);
    assert.deepEqual(dataTags(a), ["b-to-a"]);
    assert.deepEqual(dataTags(c), []);
    // Now both are known: a reply goes to b only.
    a.send(frame(B, A, "a-to-b"));
    await barrier(a, A, b, c);
    assert.deepEqual(dataTags(b), ["a-to-b"]);
    assert.deepEqual(dataTags(c), []);
    assert.equal(sw.stats().ports.a?.macs, 1);
    assert.equal(sw.stats().ports.b?.macs, 1);
  });

  test("drops frames whose destination is on the ingress port", async () => {
    const { sw, a, b, c } = await threePorts();
    const A2 = mac(0xa2);
    await barrier(a, A, b, c);
    await barrier(a, A2, b, c);
    a.send(frame(A2, A, "hairpin"));
    await barrier(a, A, b, c);
    assert.deepEqual(dataTags(b), []);
    assert.deepEqual(dataTags(c), []);
    assert.equal(sw.stats().ports.a?.rxDropped, 1);
  });

  test("never learns a multicast or zero source; drops such frames", async () => {
    const { sw, a, b, c } = await threePorts();
    a.send(frame(B, MULTICAST, "mcast-src"));
    a.send(frame(B, BROADCAST, "bcast-src"));
    a.send(frame(B, Buffer.alloc(6), "zero-src"));
    await barrier(a, A, b, c);
    assert.deepEqual(dataTags(b), []);
    const stats = sw.stats();
    assert.equal(stats.macs, 1, "only A");
    assert.equal(stats.ports.a?.rxDropped, 3);
    // Something sent to the multicast MAC is still flooded (group addresses are never learned).
    b.send(frame(MULTICAST, B, "to-group"));
    await barrier(b, B, a, c);
    assert.deepEqual(dataTags(a), ["to-group"]);
    assert.deepEqual(dataTags(c), ["to-group"]);
  });

  test("ages MAC entries out (injected clock)", async () => {
    let now = 1_000_000;
    const { sw, a, b, c } = await threePorts({ macAgingMs: 10_000, now: () => now });
    await barrier(a, A, b, c);
    now += 9_000;
    b.send(frame(A, B, "fresh"));
    await barrier(b, B, a, c);
    assert.deepEqual(dataTags(c), [], "entry still valid: unicast");
    // A has been silent for 9 s; 2 s more and it is 11 s old.
    now += 2_000;
    assert.equal(sw.stats().ports.a?.macs, 0, "stats drop expired entries");
    b.send(frame(A, B, "stale"));
    await barrier(b, B, a, c);
    assert.deepEqual(dataTags(a), ["fresh", "stale"]);
    assert.deepEqual(dataTags(c), ["stale"], "aged out: flooded");
  });

  test("relearns a MAC that moves to another port", async () => {
    const { sw, a, b, c } = await threePorts();
    await barrier(a, A, b, c);
    await barrier(c, A, a, b); // A now appears on port c
    b.send(frame(A, B, "where-is-a"));
    await barrier(b, B, a, c);
    assert.deepEqual(dataTags(c), ["where-is-a"]);
    assert.deepEqual(dataTags(a), []);
    assert.equal(sw.stats().ports.a?.macs, 0);
    assert.equal(sw.stats().ports.c?.macs, 1);
  });

  test("a malformed length closes that port only", async () => {
    const { sw, a, b, c } = await threePorts();
    const errors: string[] = [];
    const detached: string[] = [];
    sw.on("port-error", (id, err) => {
      assert.ok(isCorralError(err, "NETWORK"));
      errors.push(`${id}:${String(err.details?.length)}`);
    });
    sw.on("port-detached", (id, reason) => detached.push(`${id}:${reason}`));
    await barrier(c, C, a, b);
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(MAX_FRAME_LENGTH + 1);
    c.socket.write(bad);
    await c.waitClosed();
    assert.deepEqual(errors, [`c:${MAX_FRAME_LENGTH + 1}`]);
    assert.deepEqual(detached, ["c:protocol"]);
    assert.deepEqual(sw.ports(), ["a", "b"]);
    assert.equal(sw.stats().macs, 0, "c's MAC forgotten");
    a.send(frame(B, A, "still-works"));
    await b.waitTag("still-works");

    // Too short is as bad, even with bytes of a valid frame already buffered before it.
    const d = await port(sw, "d");
    d.socket.write(Buffer.concat([encodeFrame(frame(BROADCAST, mac(0xd), "ok")), bad.fill(0)]));
    await d.waitClosed();
    await a.waitTag("ok");
    assert.deepEqual(sw.ports(), ["a", "b"]);
  });

  test("reassembles frames split across writes and many frames per write", async () => {
    const { a, b, c } = await threePorts();
    const sent = Array.from({ length: 20 }, (_, i) => frame(BROADCAST, A, `f${i}`, 60 + i * 97));
    const bytes = Buffer.concat(sent.map(encodeFrame));
    // Odd-sized pieces with pauses so that the switch sees them as separate chunks.
    for (let off = 0; off < bytes.length; ) {
      const n = Math.min(1 + ((off * 7) % 13), bytes.length - off);
      a.socket.write(bytes.subarray(off, off + n));
      off += n;
      if (off % 5 === 0) await sleep(1);
    }
    a.socket.write(Buffer.concat(sent.map(encodeFrame)));
    await barrier(a, A, b, c);
    const want = [...sent, ...sent].map(tagOf);
    assert.deepEqual(dataTags(b), want);
    assert.deepEqual(
      b.frames.filter((f) => !tagOf(f).startsWith("barrier-")),
      [...sent, ...sent],
      "bytes intact",
    );
  });

  test("drops frames to a port that does not drain, without stalling the others", async () => {
    const { sw, a, b, c } = await threePorts({ maxQueuedBytesPerPort: 256 * 1024 });
    b.socket.pause(); // b's VM stops reading
    const n = 2000; // 3 MB: more than the socket buffers and the queue limit together
    for (let i = 0; i < n; i++) {
      a.send(frame(BROADCAST, A, `big${i}`, 1514));
      if (i % 20 === 19) await sleep(1); // paced: c, which reads, never falls behind
    }
    await barrier(a, A, c);
    assert.equal(dataTags(c).length, n, "c got every frame");
    const stats = sw.stats();
    assert.equal(stats.ports.a?.rxFrames, n + 1);
    assert.equal(stats.ports.c?.txDropped, 0);
    const bStats = stats.ports.b;
    assert.ok(bStats !== undefined && bStats.txDropped > 0, "frames to b were dropped");
    assert.equal(bStats.txFrames + bStats.txDropped, n + 1);
    assert.equal(bStats.txBytes + bStats.txDroppedBytes, n * 1514 + 60);
    // b resumes: it gets what had been queued for it, then new traffic again.
    b.socket.resume();
    await b.until(() => b.frames.length === bStats.txFrames, "b's queue");
    await barrier(a, A, b);
    assert.equal(sw.stats().ports.b?.txDropped, bStats.txDropped);
  });

  test("detach forgets the port's MACs and closes its stream", async () => {
    const { sw, a, b, c } = await threePorts();
    const detached: string[] = [];
    sw.on("port-detached", (id, reason) => detached.push(`${id}:${reason}`));
    await barrier(a, A, b, c);
    assert.equal(sw.stats().macs, 1);
    sw.detach("a");
    await a.waitClosed();
    assert.deepEqual(detached, ["a:detached"]);
    assert.deepEqual(sw.ports(), ["b", "c"]);
    assert.equal(sw.stats().macs, 0);
    b.send(frame(A, B, "to-gone-a"));
    await c.waitTag("to-gone-a"); // unknown again: flooded
    sw.detach("nope"); // unknown ids are a no-op
    // The id can be used again.
    const a2 = await port(sw, "a");
    await barrier(b, B, a2);
  });

  test("a port whose stream ends is detached and its MACs forgotten", async () => {
    const { sw, a, b, c } = await threePorts();
    await barrier(a, A, b, c);
    const gone = once(sw, "port-detached");
    a.socket.end();
    assert.deepEqual(await gone, ["a", "ended"]);
    assert.deepEqual(sw.ports(), ["b", "c"]);
    assert.equal(sw.stats().macs, 0);
  });

  test("refuses a duplicate port id and attaching after close", async () => {
    const sw = new EthernetSwitch("dup");
    const [x] = await socketPair();
    sw.attach("p", x);
    const [y] = await socketPair();
    assert.throws(
      () => sw.attach("p", y),
      (e) => isCorralError(e, "INVALID_ARGUMENT"),
    );
    sw.close();
    assert.deepEqual(sw.ports(), []);
    assert.throws(
      () => sw.attach("q", y),
      (e) => isCorralError(e, "NETWORK"),
    );
  });

  test("bounds the MACs learned per port", async () => {
    const { sw, a, b, c } = await threePorts({ maxMacsPerPort: 4 });
    for (let i = 0; i < 10; i++) a.send(frame(BROADCAST, mac(0x40 + i), `spoof${i}`));
    await barrier(a, A, b, c);
    assert.equal(sw.stats().ports.a?.macs, 4);
    assert.equal(dataTags(b).length, 10, "frames still forwarded");
  });

  test("two switches are isolated", async () => {
    const sw1 = new EthernetSwitch("one");
    const sw2 = new EthernetSwitch("two");
    cleanups.push(
      () => sw1.close(),
      () => sw2.close(),
    );
    const a = await port(sw1, "a");
    const b = await port(sw1, "b");
    const c = await port(sw2, "a"); // same port id, other switch
    const d = await port(sw2, "d");
    a.send(frame(BROADCAST, A, "on-one"));
    a.send(frame(C, A, "unknown-on-one"));
    await barrier(a, A, b);
    await barrier(c, C, d);
    assert.deepEqual(dataTags(b), ["on-one", "unknown-on-one"]);
    assert.deepEqual(dataTags(d), []);
    await barrier(d, mac(0xd), c);
    assert.deepEqual(dataTags(c), []);
    assert.equal(sw1.stats().macs, 1);
    assert.equal(sw2.stats().macs, 2);
    assert.equal(sw2.stats().ports.a?.rxFrames, 1);
  });
});

/** A stand-in for QEMU's `-netdev stream,server=on`: one client at a time, framed. */
class FakeQemu {
  readonly path: string;
  server: Server | undefined;
  conn: Peer | undefined;
  accepted = 0;
  constructor(path = sockPath()) {
    this.path = path;
  }
  async listen(): Promise<this> {
    const server = createServer((s) => {
      this.accepted++;
      this.conn = new Peer(s);
    });
    this.server = server;
    await new Promise<void>((r) => server.listen(this.path, r));
    cleanups.push(() => this.stop());
    return this;
  }
  /** Drops the current client, like QEMU seeing an error; keeps listening. */
  drop(): void {
    this.conn?.socket.destroy();
    this.conn = undefined;
  }
  /** QEMU exits: the socket file goes away with it. */
  stop(): void {
    this.drop();
    this.server?.close();
    this.server = undefined;
  }
  async waitAccepted(n: number): Promise<Peer> {
    const deadline = Date.now() + 5000;
    while (this.accepted < n || this.conn === undefined) {
      if (Date.now() > deadline) throw new Error(`no connection #${n} on ${this.path}`);
      await sleep(5);
    }
    return this.conn;
  }
}

describe("SwitchRegistry", () => {
  const A = mac(0xa);
  const B = mac(0xb);

  function registry(): SwitchRegistry {
    const r = new SwitchRegistry({ reconnectMinMs: 10, reconnectMaxMs: 50 });
    cleanups.push(() => r.close());
    return r;
  }

  test("validates switch names for --network switch:NAME", () => {
    const r = registry();
    for (const bad of ["", "Lab", "-lab", "a b", "a/b", "x".repeat(33), "ü"]) {
      assert.throws(
        () => r.get(bad),
        (e) =>
          isCorralError(e, "INVALID_ARGUMENT") &&
          e.field === "network" &&
          e.message.startsWith("network: invalid switch name"),
        bad,
      );
    }
    for (const good of ["lab", "0", "a.b_c-d", "x".repeat(32)])
      assert.equal(r.get(good).name, good);
    assert.equal(r.get("lab"), r.get("lab"), "one switch per name");
  });

  test("connects two fake QEMUs, retrying until their sockets appear", async () => {
    const r = registry();
    const q1 = new FakeQemu();
    const q2 = await new FakeQemu().listen();
    const pending = r.connect("lab", "vm1", q1.path, { retryMs: 5 });
    await sleep(50); // ENOENT for a while
    await q1.listen();
    await pending;
    await r.connect("lab", "vm2", q2.path);
    const p1 = await q1.waitAccepted(1);
    const p2 = await q2.waitAccepted(1);
    p1.send(frame(BROADCAST, A, "hello"));
    await p2.waitTag("hello");
    p2.send(frame(A, B, "reply"));
    await p1.waitTag("reply");
    const [listing] = r.list();
    assert.equal(listing?.name, "lab");
    assert.deepEqual(listing?.ports, ["vm1", "vm2"]);
    assert.equal(listing?.stats.ports.vm2?.rxFrames, 1);
    assert.equal(listing?.stats.macs, 2);
  });

  test("gives up with TIMEOUT when no socket appears", async () => {
    const r = registry();
    await assert.rejects(r.connect("lab", "vm", sockPath(), { retryMs: 5, timeoutMs: 60 }), (e) =>
      isCorralError(e, "TIMEOUT"),
    );
    // The failed port is not left half-registered.
    assert.deepEqual(r.list()[0]?.ports, []);
    const q = await new FakeQemu().listen();
    await r.connect("lab", "vm", q.path);
  });

  test("the abort signal stops the initial connection", async () => {
    const r = registry();
    const ac = new AbortController();
    const pending = r.connect("lab", "vm", sockPath(), { retryMs: 5, signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(pending, (e) => isCorralError(e, "CANCELLED") && e.kind === "cancelled");
    const pending2 = r.connect("lab", "vm", sockPath(), { retryMs: 5 });
    setTimeout(() => r.disconnect("vm"), 30);
    await assert.rejects(pending2, (e) => isCorralError(e, "NETWORK"));
  });

  test("refuses a port id already linked", async () => {
    const r = registry();
    const q = await new FakeQemu().listen();
    await r.connect("lab", "vm", q.path);
    await assert.rejects(r.connect("other", "vm", q.path), (e) =>
      isCorralError(e, "INVALID_ARGUMENT"),
    );
  });

  test("reconnects after QEMU drops the connection, and relearns MACs", async () => {
    const r = registry();
    const states: string[] = [];
    r.on("port-state", (sw, id, state: PortLinkState) => states.push(`${sw}/${id}:${state}`));
    const q1 = await new FakeQemu().listen();
    const q2 = await new FakeQemu().listen();
    await r.connect("lab", "vm1", q1.path);
    await r.connect("lab", "vm2", q2.path);
    const p1 = await q1.waitAccepted(1);
    const p2 = await q2.waitAccepted(1);
    p1.send(frame(BROADCAST, A, "before"));
    await p2.waitTag("before");
    assert.equal(r.list()[0]?.stats.macs, 1);

    q1.drop();
    const again = await q1.waitAccepted(2);
    await p2.until(() => states.length >= 4, "reconnect states");
    assert.deepEqual(states, [
      "lab/vm1:connected",
      "lab/vm2:connected",
      "lab/vm1:reconnecting",
      "lab/vm1:connected",
    ]);
    assert.equal(r.list()[0]?.stats.macs, 0, "the dropped port's MACs are forgotten");
    again.send(frame(BROADCAST, A, "after"));
    await p2.waitTag("after");
    p2.send(frame(A, B, "to-a"));
    await again.waitTag("to-a");
    assert.deepEqual(r.list()[0]?.ports.sort(), ["vm1", "vm2"]);
  });

  test("keeps redialling while a stale socket refuses", async () => {
    const r = registry();
    const q = await new FakeQemu().listen();
    // A second name for the socket inode: it stays behind, refusing, when the listener goes.
    const stale = sockPath();
    linkSync(q.path, stale);
    await r.connect("lab", "vm", stale);
    await q.waitAccepted(1);
    q.stop();
    await sleep(150); // several redials get ECONNREFUSED
    assert.deepEqual(r.list()[0]?.ports, []);
    // A new QEMU on that path, created in one step (no moment without the file).
    unlinkSync(stale);
    const q2 = new FakeQemu(stale);
    await q2.listen();
    await q2.waitAccepted(1);
    assert.deepEqual(r.list()[0]?.ports, ["vm"]);
  });

  test("stops when the socket path is gone", async () => {
    const r = registry();
    const q = await new FakeQemu().listen();
    await r.connect("lab", "vm", q.path);
    await q.waitAccepted(1);
    const gone = new Promise<void>((resolve) =>
      r.on("port-state", (_sw, id, state) => {
        if (id === "vm" && state === "gone") resolve();
      }),
    );
    q.stop(); // QEMU exited: the listener and its socket file are gone
    assert.equal(existsSync(q.path), false);
    await gone;
    assert.deepEqual(r.list()[0]?.ports, []);
    // The port id is free again.
    const q2 = await new FakeQemu().listen();
    await r.connect("lab", "vm", q2.path);
  });

  test("disconnect detaches and stops reconnecting", async () => {
    const r = registry();
    const q = await new FakeQemu().listen();
    const other = await new FakeQemu().listen();
    await r.connect("lab", "vm", q.path);
    await r.connect("lab", "keep", other.path);
    const p = await q.waitAccepted(1);
    r.disconnect("vm");
    await p.waitClosed();
    await sleep(150); // several reconnect periods
    assert.equal(q.accepted, 1, "no redial after disconnect");
    assert.deepEqual(r.list()[0]?.ports, ["keep"]);
    r.disconnect("keep");
    assert.deepEqual(r.list(), [], "an empty switch is dropped");
    r.disconnect("unknown");
  });

  test("close stops everything", async () => {
    const r = registry();
    const q = await new FakeQemu().listen();
    await r.connect("lab", "vm", q.path);
    const p = await q.waitAccepted(1);
    r.close();
    await p.waitClosed();
    await sleep(100);
    assert.equal(q.accepted, 1);
    assert.throws(
      () => r.get("lab"),
      (e) => isCorralError(e, "NETWORK"),
    );
  });
});
