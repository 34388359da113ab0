import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import type { ProgressEvent } from "../../src/base/progress.js";
import { isCorralError } from "../../src/errors.js";
import { cachePaths } from "../../src/paths/layout.js";
import { OciClient } from "../../src/protocols/oci/client.js";
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  OCI_MANIFEST,
  pushImage,
  sha256,
} from "../support/oci-push.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { startTokenServer, type TokenServer } from "../support/token-server.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const fastRetry = { attempts: 3, backoffMs: 10 };

/** A one-file ustar archive: layer contents are opaque to the client, but keep them real. */
function tar(name: string, content: string): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${Buffer.byteLength(content).toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\x0000", 257);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(Buffer.byteLength(content) / 512) * 512);
  body.write(content);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

function zstd(data: Buffer): Buffer {
  const r = spawnSync("zstd", ["-q", "-c"], { input: data });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}

function blobFiles(): string[] {
  try {
    return readdirSync(join(cachePaths.blobs(), "sha256"));
  } catch {
    return [];
  }
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isCorralError(err), `expected a CorralError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(`${err.message} | ${err.hint}`, pattern);
    return true;
  });
}

const savedCache = process.env.CORRAL_CACHE_DIR;
let cache: string;

before(() => {
  cache = mkdtempSync(join(tmpdir(), "corral-oci-cache-"));
  process.env.CORRAL_CACHE_DIR = cache;
});
after(() => {
  rmSync(cache, { recursive: true, force: true });
  if (savedCache === undefined) delete process.env.CORRAL_CACHE_DIR;
  else process.env.CORRAL_CACHE_DIR = savedCache;
});

describe("OCI client against docker-registry", () => {
  let registry: TestRegistry;
  let client: OciClient;

  before(async () => {
    registry = await startRegistry();
    client = new OciClient({ retry: fastRetry, dockerConfigPath: "/nonexistent" });
  });
  after(async () => {
    await client.close();
    await registry.stop();
  });

  it("pulls a Docker schema2 image: manifest, verified config, layer blobs", async () => {
    const layer = gzipSync(tar("hello.txt", "hello from schema2\n"));
    const config = { architecture: "amd64", os: "linux", config: { Cmd: ["/hello"] } };
    const pushed = await pushImage(registry.url, "test/schema2", "v1", {
      layers: [{ data: layer, mediaType: DOCKER_GZIP }],
      config,
      manifestMediaType: DOCKER_MANIFEST,
    });
    const events: ProgressEvent[] = [];
    const image = await client.resolve(`${registry.host}/test/schema2:v1`);
    assert.equal(image.manifestDigest, pushed.digest);
    assert.equal(image.indexDigest, undefined);
    assert.equal(image.manifest.mediaType, DOCKER_MANIFEST);
    assert.deepEqual(image.config, config);
    assert.deepEqual(image.layers, [
      { digest: sha256(layer), size: layer.length, mediaType: DOCKER_GZIP, compression: "gzip" },
    ]);
    const path = await client.fetchBlob(image.reference, image.layers[0]!, {
      onProgress: (e) => events.push(e),
    });
    assert.equal(path, cachePaths.blob(sha256(layer)));
    assert.deepEqual(readFileSync(path), layer);
    const last = events.at(-1);
    assert.equal(last?.phase, "pull");
    assert.equal(last?.done, true);
    assert.equal(last?.total, layer.length);
    assert.equal(last?.label, sha256(layer).slice(7, 19));

    // A cached blob is reused without a download (no progress at all).
    events.length = 0;
    assert.equal(
      await client.fetchBlob(image.reference, image.layers[0]!, {
        onProgress: (e) => events.push(e),
        verifyCached: true,
      }),
      path,
    );
    assert.equal(events.length, 0);
  });

  it("pulls an OCI image with gzip and zstd layers, also by digest", async () => {
    const gz = gzipSync(tar("a", "gzip layer\n"));
    const zs = zstd(tar("b", "zstd layer\n"));
    const pushed = await pushImage(registry.url, "test/oci", "v1", {
      layers: [
        { data: gz, mediaType: GZIP },
        { data: zs, mediaType: ZSTD },
      ],
      manifestMediaType: OCI_MANIFEST,
    });
    for (const ref of [
      `${registry.host}/test/oci:v1`,
      `${registry.host}/test/oci@${pushed.digest}`,
    ]) {
      const image = await client.resolve(ref);
      assert.equal(image.manifestDigest, pushed.digest);
      assert.equal(image.manifest.mediaType, OCI_MANIFEST);
      assert.deepEqual(
        image.layers.map((l) => [l.mediaType, l.compression]),
        [
          [GZIP, "gzip"],
          [ZSTD, "zstd"],
        ],
      );
      const paths = await Promise.all(
        image.layers.map((l) => client.fetchBlob(image.reference, l)),
      );
      assert.deepEqual(readFileSync(paths[1]!), zs);
    }
  });

  it("selects amd64 and arm64/v8 from a multi-arch index, and lists platforms otherwise", async () => {
    const amd = gzipSync(tar("arch", "amd64\n"));
    const arm = gzipSync(tar("arch", "arm64\n"));
    const pushed = await pushImage(registry.url, "test/multi", "latest", {
      index: {
        images: [
          {
            platform: { os: "linux", architecture: "amd64" },
            layers: [{ data: amd, mediaType: GZIP }],
          },
          {
            platform: { os: "linux", architecture: "arm64", variant: "v8" },
            layers: [{ data: arm, mediaType: GZIP }],
          },
        ],
      },
    });
    const ref = `${registry.host}/test/multi`;
    const x86 = await client.resolve(ref);
    assert.equal(x86.indexDigest, pushed.digest);
    assert.equal(x86.manifestDigest, pushed.images[0]!.digest);
    assert.equal(x86.layers[0]!.digest, sha256(amd));
    assert.equal(x86.config.architecture, "amd64");
    for (const platform of [
      { os: "linux", architecture: "arm64", variant: "v8" },
      { os: "linux", architecture: "arm64" },
      { os: "linux", architecture: "aarch64" },
    ]) {
      const a = await client.resolve(ref, { platform });
      assert.equal(a.manifestDigest, pushed.images[1]!.digest, JSON.stringify(platform));
      assert.equal(a.layers[0]!.digest, sha256(arm));
    }
    await rejectsWith(
      client.resolve(ref, { platform: { os: "linux", architecture: "s390x" } }),
      "REGISTRY_NOT_FOUND",
      /linux\/s390x.*available: linux\/amd64, linux\/arm64\/v8/,
    );
  });

  it("follows a Docker manifest list", async () => {
    const layer = gzipSync(tar("x", "list\n"));
    const pushed = await pushImage(registry.url, "test/list", "v2", {
      index: {
        mediaType: DOCKER_LIST,
        images: [
          {
            platform: { os: "linux", architecture: "amd64" },
            manifestMediaType: DOCKER_MANIFEST,
            layers: [{ data: layer, mediaType: DOCKER_GZIP }],
          },
        ],
      },
    });
    const image = await client.resolve(`${registry.host}/test/list:v2`);
    assert.equal(image.manifestDigest, pushed.images[0]!.digest);
    assert.equal(image.manifest.mediaType, DOCKER_MANIFEST);
  });

  it("reports an unknown tag or repository as not found, with a hint", async () => {
    await rejectsWith(
      client.resolve(`${registry.host}/test/oci:nope`),
      "REGISTRY_NOT_FOUND",
      /test\/oci:nope.*MANIFEST_UNKNOWN.*check the image name and tag/,
    );
    await rejectsWith(
      client.resolve(`${registry.host}/no/such:thing`),
      "REGISTRY_NOT_FOUND",
      /not found/,
    );
  });

  describe("an interrupted layer download", () => {
    let proxy: Server;
    let proxyHost: string;
    let cutsLeft = 0;
    const big = gzipSync(Buffer.from(Array.from({ length: 60_000 }, (_, i) => i % 251)), {
      level: 0,
    });

    before(async () => {
      await pushImage(registry.url, "test/cut", "v1", { layers: [{ data: big, mediaType: GZIP }] });
      // Forwards to the registry; while cutsLeft > 0, blob answers stop half-way.
      proxy = createServer((req, res) => {
        const upstream = httpRequest(
          `${registry.url}${req.url}`,
          { method: req.method, headers: req.headers },
          (up) => {
            const chunks: Buffer[] = [];
            up.on("data", (c: Buffer) => chunks.push(c));
            up.on("end", () => {
              const body = Buffer.concat(chunks);
              res.writeHead(up.statusCode ?? 502, up.headers);
              if (req.url?.includes(`/blobs/${sha256(big)}`) && cutsLeft > 0) {
                cutsLeft--;
                res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
                return;
              }
              res.end(body);
            });
          },
        );
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
      proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });
    after(async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    });

    it("never leaves a corrupt or temp blob, and the next pull succeeds", async () => {
      const once = new OciClient({ retry: { attempts: 1 } });
      try {
        const image = await once.resolve(`${proxyHost}/test/cut:v1`);
        cutsLeft = 1;
        await rejectsWith(
          once.fetchBlob(image.reference, image.layers[0]!),
          "REGISTRY",
          /interrupted/,
        );
        assert.ok(!blobFiles().some((f) => f.includes(sha256(big).slice(7))), String(blobFiles()));
        const path = await once.fetchBlob(image.reference, image.layers[0]!);
        assert.deepEqual(readFileSync(path), big);
        rmSync(path);
      } finally {
        await once.close();
      }
    });

    it("is retried from zero within one pull", async () => {
      const image = await client.resolve(`${proxyHost}/test/cut:v1`);
      cutsLeft = 2;
      const path = await client.fetchBlob(image.reference, image.layers[0]!);
      assert.equal(cutsLeft, 0);
      assert.deepEqual(readFileSync(path), big);
      assert.deepEqual(
        blobFiles().filter((f) => f.endsWith(".tmp")),
        [],
      );
    });
  });
});

describe("OCI client with token auth", () => {
  const user = "alice";
  const password = "s3cret:pass";
  let tokens: TokenServer;
  let registry: TestRegistry;
  let layer: Buffer;
  let ref: string;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "corral-oci-auth-"));
    tokens = await startTokenServer({ username: user, password });
    registry = await startRegistry({
      tokenAuth: {
        realm: tokens.realm,
        service: tokens.service,
        issuer: tokens.issuer,
        rootCertBundle: tokens.certPath,
      },
    });
    layer = gzipSync(tar("secret", "private\n"));
    const token = tokens.mint([
      { type: "repository", name: "private/app", actions: ["pull", "push"] },
    ]);
    await pushImage(registry.url, "private/app", "v1", {
      layers: [{ data: layer, mediaType: GZIP }],
      token,
    });
    ref = `${registry.host}/private/app:v1`;
  });
  after(async () => {
    await registry?.stop();
    await tokens?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("denies anonymous pulls with a hint to log in", async () => {
    const anon = new OciClient({ retry: fastRetry, dockerConfigPath: "/nonexistent" });
    try {
      await rejectsWith(
        anon.resolve(ref),
        "REGISTRY_AUTH",
        /authentication required.*docker login/,
      );
    } finally {
      await anon.close();
    }
  });

  it("pulls with --creds, fetching one token for all requests", async () => {
    const authed = new OciClient({ retry: fastRetry, credentials: { username: user, password } });
    try {
      const before = tokens.requests();
      const image = await authed.resolve(ref);
      const path = await authed.fetchBlob(image.reference, image.layers[0]!);
      assert.deepEqual(readFileSync(path), layer);
      assert.equal(tokens.requests() - before, 1);
    } finally {
      await authed.close();
    }
  });

  it("pulls with credentials from a docker config.json", async () => {
    const configPath = join(dir, "config.json");
    const auth = Buffer.from(`${user}:${password}`).toString("base64");
    writeFileSync(configPath, JSON.stringify({ auths: { [registry.host]: { auth } } }));
    const authed = new OciClient({ retry: fastRetry, dockerConfigPath: configPath });
    try {
      const image = await authed.resolve(ref);
      assert.equal(image.layers[0]!.digest, sha256(layer));
    } finally {
      await authed.close();
    }
  });

  it("reports wrong credentials clearly, without leaking them", async () => {
    const wrong = new OciClient({
      retry: fastRetry,
      credentials: { username: user, password: "hunter2-wrong" },
    });
    try {
      await assert.rejects(wrong.resolve(ref), (err: unknown) => {
        assert.ok(isCorralError(err, "REGISTRY_AUTH"), String(err));
        assert.match(err.message, /rejected the credentials/);
        assert.match(err.hint ?? "", /--creds/);
        assert.doesNotMatch(JSON.stringify({ ...err.toJSON(), stack: err.stack }), /hunter2/);
        return true;
      });
    } finally {
      await wrong.close();
    }
  });
});
