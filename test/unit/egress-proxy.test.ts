import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs";
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  request as httpRequest,
  type IncomingMessage,
} from "node:http";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { ProxyAgent, request as undiciRequest } from "undici";
import {
  type EgressLogEntry,
  EgressPolicy,
  EgressProxy,
  type EgressProxyOptions,
  parseAllowRules,
} from "../../src/net/egress/index.js";

// ---------------------------------------------------------------------------------------------
// Fixtures: an upstream HTTP server, a TCP echo server (stands in for TLS), all on 127.0.0.1.

let dir: string;
let upstream: HttpServer;
let upstreamPort: number;
let echo: Server;
let echoPort: number;
const echoSockets = new Set<Socket>();

function listenTcp(server: Server | HttpServer): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  const port = await listenTcp(s);
  await new Promise((resolve) => s.close(resolve));
  return port;
}

function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "corral-egress-"));
  upstream = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/reset") {
        res.writeHead(200, { "Content-Length": "1000" });
        res.write("partial");
        setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      if (req.url === "/big") {
        res.writeHead(200, { "Content-Type": "application/octet-stream" });
        res.end(Buffer.alloc(1024 * 1024, 7));
        return;
      }
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(201, {
        "Content-Type": "application/json",
        "X-Upstream": "yes",
        Connection: "keep-alive, X-Hop",
        "X-Hop": "must be stripped",
        "Set-Cookie": ["a=1", "b=2"],
      });
      res.end(body);
    });
  });
  upstreamPort = await listenTcp(upstream);
  echo = createServer({ allowHalfOpen: true }, (socket) => {
    echoSockets.add(socket);
    socket.on("close", () => echoSockets.delete(socket));
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      if (d.toString() === "RESET") socket.resetAndDestroy();
      else socket.write(d);
    });
    socket.on("end", () => socket.end());
  });
  echoPort = await listenTcp(echo);
});

after(async () => {
  upstream.closeAllConnections();
  await closeServer(upstream);
  for (const s of echoSockets) s.destroy();
  await closeServer(echo);
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The proxy under test, fed through a 0600 unix socket and a 127.0.0.1 TCP listener.

const NAMES: Record<string, string[]> = {
  "allowed.test": ["127.0.0.1"],
  "other.test": ["127.0.0.1"],
  "internal.test": ["10.0.0.5"],
  "loopy.test": ["127.0.0.1"],
};

interface Harness {
  proxy: EgressProxy;
  entries: EgressLogEntry[];
  lookups: string[];
  socketPath: string;
  port: number;
  close(): Promise<void>;
}

let current: Harness | undefined;
let counter = 0;

async function startProxy(
  rules: string[],
  options: Partial<EgressProxyOptions> = {},
): Promise<Harness> {
  const entries: EgressLogEntry[] = [];
  const lookups: string[] = [];
  const proxy = new EgressProxy({
    policy: new EgressPolicy(parseAllowRules(rules)),
    lookup: async (host) => {
      lookups.push(host);
      const found = NAMES[host];
      if (found === undefined)
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
      return found;
    },
    onDecision: (e) => entries.push(e),
    ...options,
  });
  const socketPath = join(dir, `egress-${counter++}.sock`);
  const unix = createServer({ allowHalfOpen: true }, (c) => proxy.handle(c));
  await new Promise<void>((resolve) => unix.listen(socketPath, resolve));
  chmodSync(socketPath, 0o600);
  const tcp = createServer({ allowHalfOpen: true }, (c) => proxy.handle(c));
  const port = await listenTcp(tcp);
  const harness: Harness = {
    proxy,
    entries,
    lookups,
    socketPath,
    port,
    close: async () => {
      proxy.close();
      await Promise.all([closeServer(unix), closeServer(tcp)]);
    },
  };
  current = harness;
  return harness;
}

afterEach(async () => {
  if (current === undefined) return;
  const h = current;
  current = undefined;
  // Every test must leave no guest connection open once its clients are gone.
  await waitFor("guest connections to close", () => h.proxy.connections === 0);
  await h.close();
});

/** Connects to the proxy over its unix socket. */
function dial(h: Harness): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: h.socketPath, allowHalfOpen: true }, () => resolve(s));
    s.once("error", reject);
    // Half-open so a test can end its side and still read; closed once the proxy ends too.
    s.on("end", () => s.end());
  });
}

/** Writes `data`, returns everything received until the proxy closes the connection. */
async function exchange(h: Harness, data: string | Buffer, endAfterWrite = false): Promise<string> {
  const s = await dial(h);
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close; got ${JSON.stringify(out.slice(0, 300))}`));
    }, 5000);
    s.on("data", (d: Buffer) => {
      out += d.toString("latin1");
    });
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.write(data);
    if (endAfterWrite) s.end();
  });
}

/** Reads one HTTP response head (and a Content-Length body) from a raw socket. */
function readResponse(s: Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      s.off("data", onData);
      const rest = buf.subarray(end + 4 + length);
      if (rest.length > 0) s.unshift(rest);
      resolve({ head, body: buf.subarray(end + 4, end + 4 + length).toString() });
    };
    s.on("data", onData);
    s.once("error", reject);
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

function decisions(h: Harness): EgressLogEntry[] {
  return h.entries.filter((e) => e.event === "decision");
}

/** An absolute-URI request through the proxy's TCP listener with node:http. */
function viaHttp(
  h: Harness,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: IncomingMessage["headers"]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: "127.0.0.1",
      port: h.port,
      path: url,
      method: options.method ?? "GET",
      // As a client configured with HTTP_PROXY sends it: Host is the target's authority.
      headers: { Host: new URL(url).host, ...options.headers },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on("error", reject);
    });
    req.end(options.body);
  });
}

// ---------------------------------------------------------------------------------------------

describe("egress proxy: CONNECT", () => {
  it("tunnels bytes both ways, with half-close, and logs decision then close", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    assert.equal(statSync(h.socketPath).mode & 0o777, 0o600);
    const s = await dial(h);
    // Bytes sent right behind the request head (a pipelined TLS ClientHello) must arrive too.
    s.write(
      `CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: allowed.test:${echoPort}\r\n\r\nearly;`,
    );
    const { head } = await readResponse(s);
    assert.match(head, /^HTTP\/1\.1 200 Connection Established/);
    const received = new Promise<string>((resolve) => {
      let out = "";
      s.on("data", (d: Buffer) => {
        out += d.toString();
      });
      s.on("end", () => resolve(out));
    });
    s.write("hello ");
    await sleep(20);
    s.end("world");
    assert.equal(await received, "early;hello world");
    await new Promise((resolve) => s.once("close", resolve));
    await waitFor("close entry", () => h.entries.length === 2);
    const [decision, closed] = h.entries as [EgressLogEntry, EgressLogEntry];
    assert.equal(decision.event, "decision");
    assert.equal(decision.kind, "connect");
    assert.equal(decision.method, "CONNECT");
    assert.equal(decision.host, "allowed.test");
    assert.equal(decision.port, echoPort);
    assert.equal(decision.allowed, true);
    assert.equal(decision.address, "127.0.0.1");
    assert.equal(decision.rule, `allowed.test:${echoPort} + 127.0.0.1:${echoPort}`);
    assert.ok(!Number.isNaN(Date.parse(decision.time)));
    assert.equal(closed.event, "close");
    assert.equal(closed.status, 200);
    assert.equal(closed.bytesUp, "early;hello world".length);
    assert.equal(closed.bytesDown, "early;hello world".length);
    assert.equal(typeof closed.durationMs, "number");
  });

  it("is what undici's ProxyAgent uses to tunnel", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${h.port}` });
    try {
      const res = await undiciRequest(`http://allowed.test:${upstreamPort}/tunnelled`, {
        dispatcher: agent,
      });
      assert.equal(res.statusCode, 201);
      const body = (await res.body.json()) as { url: string };
      assert.equal(body.url, "/tunnelled");
    } finally {
      await agent.close();
    }
    assert.equal(decisions(h)[0]?.kind, "connect");
  });

  it("denies a name no rule allows with 403 and the reason, without resolving it", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`]);
    const response = await exchange(
      h,
      "CONNECT api.evil.com:443 HTTP/1.1\r\nHost: api.evil.com:443\r\n\r\n",
    );
    assert.equal(statusOf(response), 403);
    assert.match(response, /\r\nX-Corral-Egress: denied\r\n/);
    assert.match(response, /\r\nContent-Type: text\/plain\r\n/);
    assert.ok(
      response.endsWith("\r\n\r\ncorral egress: api.evil.com:443 matches no --allow-host rule\n"),
    );
    assert.deepEqual(h.lookups, []);
    assert.equal(h.entries.length, 1);
    assert.deepEqual(
      { ...h.entries[0], time: undefined },
      {
        time: undefined,
        event: "decision",
        kind: "connect",
        method: "CONNECT",
        host: "api.evil.com",
        port: 443,
        allowed: false,
        reason: "api.evil.com:443 matches no --allow-host rule",
        status: 403,
      },
    );
  });

  it("denies a port the rule does not allow", async () => {
    const h = await startProxy(["allowed.test:443"]);
    const response = await exchange(
      h,
      `CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.equal(statusOf(response), 403);
    assert.match(response, /port \d+ is not allowed by --allow-host allowed\.test:443/);
  });

  it("denies an IP literal when only a name is allowed", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`]);
    const response = await exchange(h, `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(response), 403);
    assert.match(response, /name rules never cover IP addresses/);
    const ambiguous = await exchange(h, `CONNECT 127.1:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(ambiguous), 403);
    assert.match(ambiguous, /ambiguous IP literal/);
  });

  it("denies names resolving to private or loopback addresses, unless an IP rule allows them", async () => {
    const h = await startProxy([`internal.test:443`, `loopy.test:${echoPort}`]);
    const internal = await exchange(h, "CONNECT internal.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statusOf(internal), 403);
    assert.match(
      internal,
      /corral egress: internal\.test:443 resolves to 10\.0\.0\.5, a private address; allow it explicitly with --allow-host 10\.0\.0\.5:443\n$/,
    );
    const loopy = await exchange(h, `CONNECT loopy.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(loopy), 403);
    assert.match(
      loopy,
      /a loopback address; allow it explicitly with --allow-host 127\.0\.0\.1:\d+/,
    );
    await h.close();

    const allowed = await startProxy([`loopy.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    const s = await dial(allowed);
    s.write(`CONNECT loopy.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match((await readResponse(s)).head, /^HTTP\/1\.1 200/);
    s.write("ping");
    const reply = await new Promise<string>((resolve) =>
      s.once("data", (d: Buffer) => resolve(d.toString())),
    );
    assert.equal(reply, "ping");
    s.end();
    await new Promise((resolve) => s.once("close", resolve));
  });

  it("answers 502 when the upstream refuses and when the name does not resolve", async () => {
    const dead = await freePort();
    const h = await startProxy([`allowed.test:${dead}`, `127.0.0.1:${dead}`, "nx.test:443"]);
    const refused = await exchange(h, `CONNECT allowed.test:${dead} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(statusOf(refused), 502);
    assert.match(refused, /X-Corral-Egress: error/);
    assert.match(refused, /cannot connect to 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    await waitFor("close entry", () => h.entries.some((e) => e.event === "close"));
    const closed = h.entries.find((e) => e.event === "close")!;
    assert.equal(closed.status, 502);
    const nx = await exchange(h, "CONNECT nx.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statusOf(nx), 502);
    assert.match(nx, /corral egress: cannot resolve nx\.test\n$/);
  });

  it("answers 504 when resolution times out", async () => {
    const h = await startProxy(["slow.test:443"], {
      connectTimeoutMs: 100,
      lookup: () => new Promise(() => {}),
    });
    const response = await exchange(h, "CONNECT slow.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statusOf(response), 504);
    assert.match(response, /timed out resolving slow\.test/);
  });

  it("refuses a CONNECT target without a port", async () => {
    const h = await startProxy(["*:*"]);
    const response = await exchange(h, "CONNECT allowed.test HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statusOf(response), 400);
  });

  it("closes an idle tunnel", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`], {
      idleTimeoutMs: 200,
    });
    const s = await dial(h);
    s.write(`CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match((await readResponse(s)).head, /^HTTP\/1\.1 200/);
    const started = Date.now();
    s.on("error", () => {});
    await new Promise((resolve) => s.once("close", resolve));
    assert.ok(Date.now() - started >= 150);
    await waitFor("close entry", () => h.entries.some((e) => e.event === "close"));
    assert.equal(h.entries.find((e) => e.event === "close")?.reason, "idle timeout");
  });

  it("survives a client that disconnects mid-tunnel and an upstream that resets", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    const before = echoSockets.size;
    const s = await dial(h);
    s.write(`CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await readResponse(s);
    await waitFor("upstream connection", () => echoSockets.size === before + 1);
    s.destroy();
    await waitFor("upstream to be closed", () => echoSockets.size === before);

    const r = await dial(h);
    r.on("error", () => {});
    r.write(`CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await readResponse(r);
    r.write("RESET");
    await new Promise((resolve) => r.once("close", resolve));
    await waitFor("close entries", () => h.entries.filter((e) => e.event === "close").length === 2);
  });
});

describe("egress proxy: absolute-URI requests", () => {
  it("forwards GET and POST with bodies through undici, pinned, with hop-by-hop headers stripped", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${h.port}`, proxyTunnel: false });
    try {
      const get = await undiciRequest(`http://allowed.test:${upstreamPort}/path?token=secret`, {
        dispatcher: agent,
      });
      assert.equal(get.statusCode, 201);
      assert.equal(get.headers["x-upstream"], "yes");
      assert.equal(get.headers["x-hop"], undefined);
      assert.deepEqual(get.headers["set-cookie"], ["a=1", "b=2"]);
      const seen = (await get.body.json()) as { method: string; url: string; rawHeaders: string[] };
      assert.equal(seen.method, "GET");
      assert.equal(seen.url, "/path?token=secret");
      const hostIndex = seen.rawHeaders.findIndex((h) => h.toLowerCase() === "host");
      assert.equal(seen.rawHeaders[hostIndex + 1], `allowed.test:${upstreamPort}`);

      const payload = "x".repeat(100_000);
      const post = await undiciRequest(`http://allowed.test:${upstreamPort}/upload`, {
        dispatcher: agent,
        method: "POST",
        body: payload,
        headers: { "content-type": "text/plain" },
      });
      assert.equal(post.statusCode, 201);
      const posted = (await post.body.json()) as { method: string; body: string };
      assert.equal(posted.method, "POST");
      assert.equal(posted.body, payload);
    } finally {
      await agent.close();
    }
    await waitFor("close entries", () => h.entries.filter((e) => e.event === "close").length === 2);
    const [getDecision] = decisions(h);
    assert.equal(getDecision?.kind, "http");
    assert.equal(getDecision?.url, `http://allowed.test:${upstreamPort}/path`);
    const postClose = h.entries.filter((e) => e.event === "close")[1]!;
    assert.equal(postClose.status, 201);
    assert.equal(postClose.bytesUp, 100_000);
    assert.ok((postClose.bytesDown ?? 0) > 100_000);
  });

  it("strips Proxy-Authorization, Proxy-Connection and Connection-listed headers", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const res = await viaHttp(h, `http://allowed.test:${upstreamPort}/h`, {
      headers: {
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Proxy-Connection": "keep-alive",
        Connection: "X-Secret",
        "X-Secret": "1",
        "X-Kept": "2",
        "Keep-Alive": "timeout=5",
      },
    });
    assert.equal(res.status, 201);
    const names = (JSON.parse(res.body) as { rawHeaders: string[] }).rawHeaders
      .filter((_, i) => i % 2 === 0)
      .map((n) => n.toLowerCase());
    for (const gone of ["proxy-authorization", "proxy-connection", "x-secret", "keep-alive"]) {
      assert.ok(!names.includes(gone), gone);
    }
    assert.ok(names.includes("x-kept"));
  });

  it("streams large responses", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const res = await viaHttp(h, `http://allowed.test:${upstreamPort}/big`);
    assert.equal(res.status, 200);
    assert.equal(res.body.length, 1024 * 1024);
  });

  it("denies a name with 403, the reason and a log entry", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`]);
    const res = await viaHttp(h, "http://api.evil.com/x?q=1");
    assert.equal(res.status, 403);
    assert.equal(res.headers["x-corral-egress"], "denied");
    assert.equal(res.headers["content-type"], "text/plain");
    assert.equal(res.body, "corral egress: api.evil.com:80 matches no --allow-host rule\n");
    assert.equal(h.entries.length, 1);
    assert.equal(h.entries[0]?.url, "http://api.evil.com/x");
    assert.equal(h.entries[0]?.status, 403);
  });

  it("denies an IP literal when only names are allowed, and a name resolving to a private address", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, "internal.test"]);
    const ip = await viaHttp(h, `http://127.0.0.1:${upstreamPort}/`);
    assert.equal(ip.status, 403);
    const internal = await viaHttp(h, "http://internal.test/");
    assert.equal(internal.status, 403);
    assert.match(internal.body, /resolves to 10\.0\.0\.5, a private address/);
  });

  it("refuses a Host header that does not match the URI", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const res = await viaHttp(h, `http://allowed.test:${upstreamPort}/`, {
      headers: { Host: "internal.test" },
    });
    assert.equal(res.status, 403);
    assert.match(res.body, /the Host header "internal\.test" does not match the URI authority/);
    const same = await viaHttp(h, `http://allowed.test:${upstreamPort}/`, {
      headers: { Host: `ALLOWED.test:${upstreamPort}` },
    });
    assert.equal(same.status, 201);
  });

  it("checks each request on a kept-alive connection on its own", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const s = await dial(h);
    s.write(
      `GET http://allowed.test:${upstreamPort}/one HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\n\r\n`,
    );
    const first = await readResponse(s);
    assert.match(first.head, /^HTTP\/1\.1 201/);
    assert.match(first.head, /keep-alive/i);
    s.write(
      `GET http://other.test:${upstreamPort}/two HTTP/1.1\r\nHost: other.test:${upstreamPort}\r\n\r\n`,
    );
    const second = await readResponse(s);
    assert.match(second.head, /^HTTP\/1\.1 403/);
    assert.match(second.body, /other\.test:\d+ matches no --allow-host rule/);
    await new Promise((resolve) => s.once("close", resolve));
    assert.deepEqual(
      decisions(h).map((e) => [e.host, e.allowed]),
      [
        ["allowed.test", true],
        ["other.test", false],
      ],
    );
  });

  it("refuses origin-form, https:// and other schemes with 400", async () => {
    const h = await startProxy(["*:*"]);
    const origin = await exchange(h, "GET /path HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    assert.equal(statusOf(origin), 400);
    assert.match(origin, /needs an absolute URI/);
    const https = await exchange(
      h,
      "GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    );
    assert.equal(statusOf(https), 400);
    assert.match(https, /use CONNECT/);
    const ftp = await exchange(h, "GET ftp://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    assert.equal(statusOf(ftp), 400);
    const userinfo = await exchange(
      h,
      "GET http://a@allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    );
    assert.equal(statusOf(userinfo), 400);
  });

  it("refuses Upgrade (websocket) over plain HTTP", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`]);
    const ws = await exchange(
      h,
      `GET http://allowed.test:${upstreamPort}/ws HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    );
    assert.equal(statusOf(ws), 400);
    assert.match(ws, /Upgrade \(websocket\)/);
    const bare = await exchange(
      h,
      `GET http://allowed.test:${upstreamPort}/ws HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\nUpgrade: websocket\r\n\r\n`,
    );
    assert.equal(statusOf(bare), 400);
  });

  it("answers 502 when the upstream refuses, and survives an upstream reset mid-response", async () => {
    const dead = await freePort();
    const h = await startProxy([
      `allowed.test:${dead}`,
      `127.0.0.1:${dead}`,
      `other.test:${upstreamPort}`,
      `127.0.0.1:${upstreamPort}`,
    ]);
    const refused = await viaHttp(h, `http://allowed.test:${dead}/`);
    assert.equal(refused.status, 502);
    assert.match(refused.body, /ECONNREFUSED/);
    await assert.rejects(viaHttp(h, `http://other.test:${upstreamPort}/reset`));
    await waitFor("close entries", () => h.entries.filter((e) => e.event === "close").length === 2);
    const closes = h.entries.filter((e) => e.event === "close");
    assert.equal(closes[0]?.status, 502);
    assert.equal(closes[1]?.reason, "the upstream closed mid-response");
  });

  it("does not send 100 Continue for a denied request", async () => {
    const h = await startProxy([]);
    const response = await exchange(
      h,
      "POST http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert.equal(statusOf(response), 403);
    assert.doesNotMatch(response, /100 Continue/);
  });
});

describe("egress proxy: hostile input", () => {
  it("answers garbage with 400 and closes", async () => {
    const h = await startProxy(["*:*"]);
    const response = await exchange(h, "\x16\x03\x01\x02\x00garbage\r\n\r\n");
    assert.equal(statusOf(response), 400);
    assert.equal(h.entries.length, 0);
  });

  it("answers oversized heads with 431", async () => {
    const h = await startProxy(["*:*"]);
    const big = await exchange(
      h,
      `GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    );
    assert.equal(statusOf(big), 431);
    const longLine = await exchange(
      h,
      `GET http://allowed.test/${"a".repeat(20_000)} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
    );
    assert.equal(statusOf(longLine), 431);
    let many = "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n";
    for (let i = 0; i < 150; i++) many += `X-H${i}: v\r\n`;
    const tooMany = await exchange(h, `${many}\r\n`);
    assert.equal(statusOf(tooMany), 431);
  });

  it("closes a connection that never finishes its head", async () => {
    const h = await startProxy(["*:*"], { headersTimeoutMs: 150 });
    const started = Date.now();
    // Trickle bytes so that an idle timeout alone would never fire.
    const s = await dial(h);
    const trickle = setInterval(() => s.writable && s.write("X"), 30);
    const closed = new Promise<string>((resolve) => {
      let out = "";
      s.on("data", (d: Buffer) => {
        out += d.toString();
      });
      s.on("error", () => {});
      s.on("close", () => resolve(out));
    });
    s.write("GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ");
    const out = await closed;
    clearInterval(trickle);
    assert.equal(statusOf(out), 408);
    assert.ok(Date.now() - started >= 100);
  });

  it("closes an idle kept-alive connection", async () => {
    const h = await startProxy([`allowed.test:${upstreamPort}`, `127.0.0.1:${upstreamPort}`], {
      idleTimeoutMs: 200,
    });
    const s = await dial(h);
    s.write(
      `GET http://allowed.test:${upstreamPort}/ HTTP/1.1\r\nHost: allowed.test:${upstreamPort}\r\n\r\n`,
    );
    await readResponse(s);
    await new Promise((resolve) => s.once("close", resolve));
  });

  it("close() ends every connection", async () => {
    const h = await startProxy([`allowed.test:${echoPort}`, `127.0.0.1:${echoPort}`]);
    const before = echoSockets.size;
    const s = await dial(h);
    s.on("error", () => {});
    s.write(`CONNECT allowed.test:${echoPort} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await readResponse(s);
    const idle = await dial(h);
    idle.on("error", () => {});
    await waitFor("two guest connections", () => h.proxy.connections === 2);
    h.proxy.close();
    await Promise.all([
      new Promise((resolve) => s.once("close", resolve)),
      new Promise((resolve) => idle.once("close", resolve)),
    ]);
    await waitFor("upstream to be closed", () => echoSockets.size === before);
    const late = await dial(h);
    await new Promise((resolve) => late.once("close", resolve));
  });

  it("ignores a throwing onDecision", async () => {
    const h = await startProxy([], {
      onDecision: () => {
        throw new Error("logger broke");
      },
    });
    const response = await exchange(h, "CONNECT evil.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statusOf(response), 403);
  });
});
