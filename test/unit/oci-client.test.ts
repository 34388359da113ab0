import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { cachePaths } from "../../src/paths/layout.js";
import { removeStaleTemps } from "../../src/protocols/oci/blob-store.js";
import { OciClient } from "../../src/protocols/oci/client.js";
import { MediaType } from "../../src/protocols/oci/media-types.js";
import { backoffDelay, parseRetryAfter } from "../../src/protocols/oci/retry.js";
import { Transport } from "../../src/protocols/oci/transport.js";
import { sha256 } from "../support/oci-push.js";
import { type FakeServer, startFakeServer } from "../support/registry.js";

const fast = { attempts: 3, backoffMs: 5 };
const layer = Buffer.from("layer bytes ".repeat(5000));
const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux" }));
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
    layers: [{ mediaType: MediaType.ociLayerGzip, digest: sha256(layer), size: layer.length }],
  }),
);
const layerDesc = { mediaType: MediaType.ociLayerGzip, digest: sha256(layer), size: layer.length };

type Hook = (req: IncomingMessage, res: ServerResponse) => boolean;

/** A registry serving one image, with `hook` (when it returns true) taking over a request. */
function imageHandler(getHook: () => Hook | undefined) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (getHook()?.(req, res)) return;
    const url = req.url ?? "";
    if (url === "/v2/app/manifests/v1" || url === `/v2/app/manifests/${sha256(manifest)}`) {
      res.writeHead(200, {
        "content-type": MediaType.ociManifest,
        "docker-content-digest": sha256(manifest),
      });
      res.end(manifest);
    } else if (url === `/v2/app/blobs/${sha256(config)}`) {
      res.writeHead(200).end(config);
    } else if (url === `/v2/app/blobs/${sha256(layer)}`) {
      res.writeHead(200, { "content-length": layer.length }).end(layer);
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }] }),
      );
    }
  };
}

function cacheFiles(): string[] {
  try {
    return readdirSync(join(cachePaths.blobs(), "sha256"));
  } catch {
    return [];
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isCorralError(err), String(err));
    assert.equal(err.code, code, err.message);
    assert.match(`${err.message} | ${err.hint}`, pattern);
    return true;
  });
}

describe("OciClient against a scripted registry", () => {
  let server: FakeServer;
  let hook: Hook | undefined;
  let cache: string | undefined;
  let client: OciClient;
  const saved = process.env.CORRAL_CACHE_DIR;

  before(async () => {
    server = await startFakeServer(imageHandler(() => hook));
  });
  after(async () => {
    await server.stop();
    if (saved === undefined) delete process.env.CORRAL_CACHE_DIR;
    else process.env.CORRAL_CACHE_DIR = saved;
  });
  beforeEach(async () => {
    hook = undefined;
    server.requests.length = 0;
    if (cache !== undefined) rmSync(cache, { recursive: true, force: true });
    cache = mkdtempSync(join(tmpdir(), "corral-oci-unit-"));
    process.env.CORRAL_CACHE_DIR = cache;
    await client?.close();
    client = new OciClient({ retry: fast, dockerConfigPath: "/nonexistent" });
  });
  after(async () => {
    await client?.close();
    if (cache !== undefined) rmSync(cache, { recursive: true, force: true });
  });

  it("resolves and fetches an image", async () => {
    const image = await client.resolve(`${server.host}/app:v1`);
    assert.equal(image.manifestDigest, sha256(manifest));
    assert.deepEqual(image.config, { architecture: "amd64", os: "linux" });
    const path = await client.fetchBlob(image.reference, image.layers[0]!);
    assert.deepEqual(readFileSync(path), layer);
    assert.equal(server.requests[0]?.headers.accept?.includes(MediaType.ociIndex), true);
  });

  it("retries 503 until it succeeds", async () => {
    let failures = 2;
    hook = (req, res) => {
      if (!req.url?.includes("/manifests/") || failures === 0) return false;
      failures--;
      res.writeHead(503).end("busy");
      return true;
    };
    const image = await client.resolve(`${server.host}/app:v1`);
    assert.equal(image.manifestDigest, sha256(manifest));
    assert.equal(server.requests.filter((r) => r.url.includes("/manifests/")).length, 3);
  });

  it("honours 429 Retry-After", async () => {
    let limited = true;
    hook = (_req, res) => {
      if (!limited) return false;
      limited = false;
      res.writeHead(429, { "retry-after": "1" }).end();
      return true;
    };
    const start = Date.now();
    await client.resolve(`${server.host}/app:v1`);
    assert.ok(Date.now() - start >= 900, "waited for Retry-After");
  });

  it("gives up after the attempts, naming the last failure", async () => {
    hook = (_req, res) => {
      res.writeHead(500).end();
      return true;
    };
    await rejectsWith(
      client.resolve(`${server.host}/app:v1`),
      "REGISTRY",
      /failed after 3 attempts: .*HTTP 500/,
    );
    assert.equal(server.requests.length, 3);
  });

  it("does not retry 4xx: 404 is not found, 403 is an auth error", async () => {
    await rejectsWith(
      client.resolve(`${server.host}/app:nope`),
      "REGISTRY_NOT_FOUND",
      /app:nope.*MANIFEST_UNKNOWN.*check the image name/,
    );
    assert.equal(server.requests.length, 1);
    hook = (_req, res) => {
      res.writeHead(403).end();
      return true;
    };
    await rejectsWith(
      client.resolve(`${server.host}/app:v1`),
      "REGISTRY_AUTH",
      /access denied.*--creds/,
    );
    assert.equal(server.requests.length, 2);
  });

  it("restarts a blob whose connection was reset mid-way, and caches nothing partial", async () => {
    let resets = 1;
    hook = (req, res) => {
      if (!req.url?.includes(sha256(layer)) || resets === 0) return false;
      resets--;
      res.writeHead(200, { "content-length": layer.length });
      res.write(layer.subarray(0, 1000), () => res.socket?.destroy());
      return true;
    };
    const once = new OciClient({ retry: { attempts: 1 } });
    try {
      await rejectsWith(
        once.fetchBlob(`${server.host}/app`, layerDesc),
        "REGISTRY",
        /interrupted after/,
      );
    } finally {
      await once.close();
    }
    assert.deepEqual(cacheFiles(), []);
    resets = 1;
    const path = await client.fetchBlob(`${server.host}/app`, layerDesc);
    assert.deepEqual(readFileSync(path), layer);
    assert.deepEqual(cacheFiles(), [sha256(layer).slice(7)]);
  });

  it("refuses wrong bytes: nothing cached, temp file removed, no retry", async () => {
    hook = (req, res) => {
      if (!req.url?.includes(sha256(layer))) return false;
      const bad = Buffer.from(layer);
      bad[100] = 0;
      res.writeHead(200).end(bad);
      return true;
    };
    await rejectsWith(
      client.fetchBlob(`${server.host}/app`, layerDesc),
      "CHECKSUM_MISMATCH",
      /expected sha256:/,
    );
    assert.equal(server.requests.length, 1);
    assert.deepEqual(cacheFiles(), []);
    hook = (req, res) => {
      if (!req.url?.includes(sha256(layer))) return false;
      res.writeHead(200).end(Buffer.concat([layer, Buffer.from("extra")]));
      return true;
    };
    await rejectsWith(
      client.fetchBlob(`${server.host}/app`, layerDesc),
      "CHECKSUM_MISMATCH",
      /more than/,
    );
    assert.deepEqual(cacheFiles(), []);
  });

  it("re-downloads a cached blob that is truncated, or corrupt when asked to verify", async () => {
    const path = cachePaths.blob(sha256(layer));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, "short");
    assert.deepEqual(readFileSync(await client.fetchBlob(`${server.host}/app`, layerDesc)), layer);
    const bad = Buffer.from(layer);
    bad[0] = 0;
    writeFileSync(path, bad);
    assert.deepEqual(readFileSync(await client.fetchBlob(`${server.host}/app`, layerDesc)), bad);
    await client.fetchBlob(`${server.host}/app`, layerDesc, { verifyCached: true });
    assert.deepEqual(readFileSync(path), layer);
  });

  it("shares concurrent downloads of one blob; two clients never corrupt each other", async () => {
    const other = new OciClient({ retry: fast });
    try {
      const paths = await Promise.all([
        client.fetchBlob(`${server.host}/app`, layerDesc),
        client.fetchBlob(`${server.host}/app`, layerDesc),
        other.fetchBlob(`${server.host}/app`, layerDesc),
      ]);
      assert.equal(new Set(paths).size, 1);
      assert.equal(server.requests.length, 2);
      assert.deepEqual(readFileSync(paths[0]!), layer);
      assert.deepEqual(cacheFiles(), [sha256(layer).slice(7)]);
    } finally {
      await other.close();
    }
  });

  it("removes temp files of dead pulls, not of live ones", async () => {
    const path = cachePaths.blob(sha256(layer));
    mkdirSync(dirname(path), { recursive: true });
    const stale = join(dirname(path), `.${sha256(layer).slice(7)}.dead.tmp`);
    const live = join(dirname(path), `.${sha256(layer).slice(7)}.live.tmp`);
    writeFileSync(stale, "x");
    writeFileSync(live, "x");
    const old = new Date(Date.now() - 3600_000);
    utimesSync(stale, old, old);
    await removeStaleTemps(sha256(layer));
    assert.deepEqual(cacheFiles().sort(), [`.${sha256(layer).slice(7)}.live.tmp`]);
    rmSync(live);
  });

  it("removes a killed pull's temp file at once (its writer pid is gone), a live one's never", async () => {
    const path = cachePaths.blob(sha256(layer));
    mkdirSync(dirname(path), { recursive: true });
    const hex = sha256(layer).slice(7);
    const dead = join(dirname(path), `.${hex}.999999999-0a1b2c3d.tmp`);
    const mine = join(dirname(path), `.${hex}.${process.pid}-0a1b2c3d.tmp`);
    writeFileSync(dead, "partial");
    writeFileSync(mine, "partial");
    await removeStaleTemps(sha256(layer));
    assert.deepEqual(cacheFiles().sort(), [`.${hex}.${process.pid}-0a1b2c3d.tmp`]);
    rmSync(mine);
  });

  it("verifies a manifest pinned by digest", async () => {
    const other = sha256(Buffer.from("something else"));
    hook = (req, res) => {
      if (req.url !== `/v2/app/manifests/${other}`) return false;
      res.writeHead(200, { "content-type": MediaType.ociManifest }).end(manifest);
      return true;
    };
    await rejectsWith(
      client.resolve(`${server.host}/app@${other}`),
      "CHECKSUM_MISMATCH",
      /manifest's digest/,
    );
    const pinned = await client.resolve(`${server.host}/app@${sha256(manifest)}`);
    assert.equal(pinned.manifestDigest, sha256(manifest));
  });

  it("refuses schema 1 and non-image artifacts clearly", async () => {
    hook = (req, res) => {
      if (!req.url?.includes("/manifests/")) return false;
      res.writeHead(200, { "content-type": MediaType.dockerSchema1Signed });
      res.end(JSON.stringify({ schemaVersion: 1, name: "app", fsLayers: [] }));
      return true;
    };
    await rejectsWith(client.resolve(`${server.host}/app:v1`), "UNSUPPORTED", /schema 1.*re-push/);
    const chart = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: {
          mediaType: "application/vnd.cncf.helm.config.v1+json",
          digest: sha256(config),
          size: config.length,
        },
        layers: [
          {
            mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            digest: sha256(layer),
            size: layer.length,
          },
        ],
      }),
    );
    hook = (req, res) => {
      if (!req.url?.includes("/manifests/")) return false;
      res.writeHead(200, { "content-type": MediaType.ociManifest }).end(chart);
      return true;
    };
    await rejectsWith(
      client.resolve(`${server.host}/app:v1`),
      "UNSUPPORTED",
      /unsupported media type application\/vnd.cncf.helm/,
    );
  });
});

describe("registry authentication", () => {
  let registry: FakeServer;
  let cdn: FakeServer;
  let tokenRequests: { auth: string | undefined; scope: string | null; service: string | null }[];
  let mode: "bearer" | "basic";
  const cache = mkdtempSync(join(tmpdir(), "corral-oci-auth-unit-"));
  const saved = process.env.CORRAL_CACHE_DIR;
  const basic = `Basic ${Buffer.from("bob:pw").toString("base64")}`;

  before(async () => {
    process.env.CORRAL_CACHE_DIR = cache;
    cdn = await startFakeServer((_req, res) => res.writeHead(200).end(layer));
    const serve = imageHandler(() => undefined);
    registry = await startFakeServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/token") {
        tokenRequests.push({
          auth: req.headers.authorization,
          scope: url.searchParams.get("scope"),
          service: url.searchParams.get("service"),
        });
        if (req.headers.authorization !== basic) return void res.writeHead(401).end();
        return void res
          .writeHead(200)
          .end(JSON.stringify({ access_token: "tok-1", expires_in: 120 }));
      }
      const expected = mode === "bearer" ? "Bearer tok-1" : basic;
      if (req.headers.authorization !== expected) {
        const challenge =
          mode === "bearer"
            ? `Bearer realm="${registry.url}/token",service="fake",scope="repository:app:pull"`
            : 'Basic realm="fake"';
        return void res.writeHead(401, { "www-authenticate": challenge }).end();
      }
      if (url.pathname.includes("/blobs/") && url.pathname.includes(sha256(layer))) {
        return void res.writeHead(307, { location: `${cdn.url}/signed?x=1` }).end();
      }
      serve(req, res);
    });
  });
  beforeEach(() => {
    tokenRequests = [];
    registry.requests.length = 0;
    cdn.requests.length = 0;
    rmSync(cachePaths.blobs(), { recursive: true, force: true });
  });
  after(async () => {
    await registry.stop();
    await cdn.stop();
    rmSync(cache, { recursive: true, force: true });
    if (saved === undefined) delete process.env.CORRAL_CACHE_DIR;
    else process.env.CORRAL_CACHE_DIR = saved;
  });

  it("follows the Bearer challenge once, caches the token, and keeps it off redirects", async () => {
    mode = "bearer";
    const client = new OciClient({ retry: fast, credentials: { username: "bob", password: "pw" } });
    try {
      const image = await client.resolve(`${registry.host}/app:v1`);
      const path = await client.fetchBlob(image.reference, image.layers[0]!);
      assert.deepEqual(readFileSync(path), layer);
      assert.deepEqual(tokenRequests, [
        { auth: basic, scope: "repository:app:pull", service: "fake" },
      ]);
      assert.equal(cdn.requests.length, 1);
      assert.equal(cdn.requests[0]?.headers.authorization, undefined);
      // manifest (401 + retry), config, blob: the token was reused.
      assert.equal(registry.requests.filter((r) => r.url.startsWith("/v2/")).length, 4);
    } finally {
      await client.close();
    }
  });

  it("sends Basic credentials when the registry asks for them", async () => {
    mode = "basic";
    const client = new OciClient({ retry: fast, credentials: { username: "bob", password: "pw" } });
    try {
      await client.resolve(`${registry.host}/app:v1`);
      assert.equal(tokenRequests.length, 0);
      assert.equal(registry.requests.at(-1)?.headers.authorization, basic);
    } finally {
      await client.close();
    }
  });

  it("without credentials, a 401 says how to log in", async () => {
    mode = "basic";
    const client = new OciClient({ retry: fast, dockerConfigPath: "/nonexistent" });
    try {
      await rejectsWith(
        client.resolve(`${registry.host}/app:v1`),
        "REGISTRY_AUTH",
        /authentication required.*docker login/,
      );
    } finally {
      await client.close();
    }
  });

  it("reports rejected credentials without the password", async () => {
    mode = "bearer";
    const client = new OciClient({
      retry: fast,
      credentials: { username: "bob", password: "wrong-pw" },
    });
    try {
      await assert.rejects(client.resolve(`${registry.host}/app:v1`), (err: unknown) => {
        assert.ok(isCorralError(err, "REGISTRY_AUTH"));
        assert.match(err.message, /rejected the credentials/);
        assert.doesNotMatch(`${err.message} ${err.hint}`, /wrong-pw/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

describe("transport and retry policy", () => {
  it("uses HTTPS except for loopback and the user's insecure registries", () => {
    const t = new Transport({ insecureRegistries: ["my.reg:5000"], timeoutMs: 1000 });
    assert.equal(t.baseUrl("docker.io"), "https://registry-1.docker.io");
    assert.equal(t.baseUrl("ghcr.io"), "https://ghcr.io");
    assert.equal(t.baseUrl("my.reg"), "https://my.reg");
    assert.equal(t.baseUrl("my.reg:5000"), "http://my.reg:5000");
    assert.equal(t.baseUrl("127.0.0.1:5000"), "http://127.0.0.1:5000");
    assert.equal(t.baseUrl("localhost"), "http://localhost");
    assert.equal(t.baseUrl("[::1]:5000"), "http://[::1]:5000");
    void t.close();
  });
  it("parses Retry-After and backs off exponentially within bounds", () => {
    assert.equal(parseRetryAfter("3"), 3000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6_000);
    assert.equal(parseRetryAfter("soon"), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(backoffDelay(0, { backoffMs: 100 }), 100);
    assert.equal(backoffDelay(3, { backoffMs: 100 }), 800);
    assert.equal(backoffDelay(20, { backoffMs: 100, maxBackoffMs: 5000 }), 5000);
    assert.equal(backoffDelay(0, { backoffMs: 100 }, 2000), 2000);
    assert.equal(backoffDelay(0, { backoffMs: 100, maxBackoffMs: 1000 }, 60_000), 1000);
  });
});
