import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { parseTokenResponse } from "../../src/protocols/oci/auth.js";
import { parseWwwAuthenticate } from "../../src/protocols/oci/challenge.js";
import {
  credentialsFromDockerConfig,
  loadDockerConfig,
  normalizeAuthKey,
  parseCredentials,
} from "../../src/protocols/oci/credentials.js";
import { parseManifest } from "../../src/protocols/oci/manifest.js";
import { layerCompression, MediaType } from "../../src/protocols/oci/media-types.js";
import {
  formatPlatform,
  parsePlatform,
  platformMatches,
  selectPlatform,
} from "../../src/protocols/oci/platform.js";

const D = (c: string) => `sha256:${c.repeat(64)}`;

describe("WWW-Authenticate", () => {
  it("parses a Bearer challenge with a comma inside the scope", () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push"';
    assert.deepEqual(parseWwwAuthenticate(header), [
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:library/alpine:pull,push",
        },
      },
    ]);
  });
  it("parses Basic, unquoted values, escapes, spacing and several challenges", () => {
    assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [
      { scheme: "basic", params: { realm: "Registry Realm" } },
    ]);
    assert.deepEqual(
      parseWwwAuthenticate(
        'Basic realm=simple, BEARER  realm = "a\\"b" , error="insufficient_scope"',
      ),
      [
        { scheme: "basic", params: { realm: "simple" } },
        { scheme: "bearer", params: { realm: 'a"b', error: "insufficient_scope" } },
      ],
    );
    assert.deepEqual(parseWwwAuthenticate("Bearer"), [{ scheme: "bearer", params: {} }]);
    assert.deepEqual(parseWwwAuthenticate(""), []);
  });
});

describe("token responses", () => {
  it("accepts token or access_token, with a 60 s default lifetime", () => {
    const now = 1_000_000;
    assert.equal(parseTokenResponse('{"token":"t1"}', "x", now).value, "t1");
    assert.equal(
      parseTokenResponse('{"access_token":"t2","expires_in":300}', "x", now).value,
      "t2",
    );
    assert.equal(parseTokenResponse('{"token":"t"}', "x", now).expiresAt, now + 50_000);
    assert.equal(
      parseTokenResponse('{"token":"t","expires_in":300}', "x", now).expiresAt,
      now + 290_000,
    );
    assert.throws(() => parseTokenResponse("{}", "x"), /no token/);
    assert.throws(() => parseTokenResponse("<html>", "x"), /not JSON/);
  });
});

describe("platforms", () => {
  const list = [
    {
      mediaType: MediaType.ociManifest,
      digest: D("1"),
      size: 1,
      platform: { os: "linux", architecture: "amd64" },
    },
    {
      mediaType: MediaType.ociManifest,
      digest: D("2"),
      size: 1,
      platform: { os: "linux", architecture: "arm", variant: "v7" },
    },
    {
      mediaType: MediaType.ociManifest,
      digest: D("3"),
      size: 1,
      platform: { os: "linux", architecture: "arm64", variant: "v8" },
    },
    {
      mediaType: MediaType.ociManifest,
      digest: D("4"),
      size: 1,
      platform: { os: "unknown", architecture: "unknown" },
    },
  ];
  it("normalises architectures and default variants", () => {
    assert.ok(
      platformMatches(
        { os: "linux", architecture: "arm64" },
        { os: "linux", architecture: "arm64", variant: "v8" },
      ),
    );
    assert.ok(
      platformMatches(
        { os: "linux", architecture: "aarch64" },
        { os: "linux", architecture: "arm64" },
      ),
    );
    assert.ok(
      platformMatches(
        { os: "linux", architecture: "x86_64" },
        { os: "linux", architecture: "amd64" },
      ),
    );
    assert.ok(
      platformMatches(
        { os: "linux", architecture: "amd64" },
        { os: "linux", architecture: "amd64", variant: "v1" },
      ),
    );
    assert.ok(
      platformMatches(
        { os: "linux", architecture: "arm" },
        { os: "linux", architecture: "arm", variant: "v7" },
      ),
    );
    assert.ok(
      !platformMatches(
        { os: "linux", architecture: "arm", variant: "v6" },
        { os: "linux", architecture: "arm", variant: "v7" },
      ),
    );
    assert.ok(
      !platformMatches(
        { os: "linux", architecture: "amd64", variant: "v3" },
        { os: "linux", architecture: "amd64" },
      ),
    );
    assert.ok(
      !platformMatches(
        { os: "windows", architecture: "amd64" },
        { os: "linux", architecture: "amd64" },
      ),
    );
  });
  it("selects from an index and lists runnable platforms when nothing fits", () => {
    assert.equal(
      selectPlatform(list, { os: "linux", architecture: "amd64" }, "img").digest,
      D("1"),
    );
    assert.equal(
      selectPlatform(list, { os: "linux", architecture: "arm64" }, "img").digest,
      D("3"),
    );
    assert.equal(
      selectPlatform(list, { os: "linux", architecture: "arm64", variant: "v8" }, "img").digest,
      D("3"),
    );
    assert.equal(selectPlatform(list, { os: "linux", architecture: "arm" }, "img").digest, D("2"));
    assert.throws(
      () => selectPlatform(list, { os: "linux", architecture: "riscv64" }, "img"),
      (err: unknown) =>
        isCorralError(err, "REGISTRY_NOT_FOUND") &&
        /img has no image for linux\/riscv64 \(available: linux\/amd64, linux\/arm\/v7, linux\/arm64\/v8\)/.test(
          err.message,
        ),
    );
  });
  it("prefers the entry whose variant is spelt as asked", () => {
    const both = [
      {
        mediaType: MediaType.ociManifest,
        digest: D("5"),
        size: 1,
        platform: { os: "linux", architecture: "arm64" },
      },
      {
        mediaType: MediaType.ociManifest,
        digest: D("6"),
        size: 1,
        platform: { os: "linux", architecture: "arm64", variant: "v8" },
      },
    ];
    assert.equal(
      selectPlatform(both, { os: "linux", architecture: "arm64", variant: "v8" }, "i").digest,
      D("6"),
    );
    assert.equal(selectPlatform(both, { os: "linux", architecture: "arm64" }, "i").digest, D("5"));
  });
  it("parses and formats os/arch/variant", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), {
      os: "linux",
      architecture: "arm64",
      variant: "v8",
    });
    assert.deepEqual(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64" });
    assert.equal(
      formatPlatform({ os: "linux", architecture: "arm", variant: "v7" }),
      "linux/arm/v7",
    );
    for (const bad of ["linux", "linux/", "/amd64", "linux/arm64/", "a/b/c/d"]) {
      assert.throws(
        () => parsePlatform(bad),
        (e: unknown) => isCorralError(e, "INVALID_ARGUMENT"),
        bad,
      );
    }
  });
});

describe("Docker config credentials", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  it("normalises auths keys", () => {
    assert.equal(normalizeAuthKey("https://index.docker.io/v1/"), "docker.io");
    assert.equal(normalizeAuthKey("registry-1.docker.io"), "docker.io");
    assert.equal(normalizeAuthKey("https://ghcr.io"), "ghcr.io");
    assert.equal(normalizeAuthKey("http://localhost:5000/v2/"), "localhost:5000");
    assert.equal(normalizeAuthKey("Quay.IO"), "quay.io");
  });
  it("decodes auth fields and username/password pairs, skipping junk", () => {
    const creds = credentialsFromDockerConfig({
      auths: {
        "https://index.docker.io/v1/": { auth: b64("hub:p:with:colons") },
        "ghcr.io": { auth: b64("gh:tok") },
        "https://ghcr.io": { auth: b64("other:ignored") },
        "quay.io": { username: "q", password: "pw" },
        "empty.io": {},
        "bad.io": { auth: b64("nocolon") },
      },
      credsStore: "desktop",
    });
    assert.deepEqual(creds.get("docker.io"), { username: "hub", password: "p:with:colons" });
    assert.deepEqual(creds.get("ghcr.io"), { username: "gh", password: "tok" });
    assert.deepEqual(creds.get("quay.io"), { username: "q", password: "pw" });
    assert.equal(creds.has("empty.io"), false);
    assert.equal(creds.has("bad.io"), false);
    assert.equal(credentialsFromDockerConfig(null).size, 0);
    assert.equal(credentialsFromDockerConfig({ auths: 3 }).size, 0);
  });
  it("treats a missing or broken config as no credentials", () => {
    const dir = mkdtempSync(join(tmpdir(), "corral-dockercfg-"));
    try {
      assert.equal(loadDockerConfig(join(dir, "missing.json")).size, 0);
      writeFileSync(join(dir, "bad.json"), "{not json");
      assert.equal(loadDockerConfig(join(dir, "bad.json")).size, 0);
      writeFileSync(
        join(dir, "ok.json"),
        JSON.stringify({ auths: { "r.io": { auth: b64("u:p") } } }),
      );
      assert.deepEqual(loadDockerConfig(join(dir, "ok.json")).get("r.io"), {
        username: "u",
        password: "p",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("parses --creds user:pass without echoing the secret on error", () => {
    assert.deepEqual(parseCredentials("u:p:q"), { username: "u", password: "p:q" });
    assert.throws(
      () => parseCredentials("justapassword"),
      (e: unknown) => isCorralError(e, "INVALID_ARGUMENT") && !e.message.includes("justapassword"),
    );
  });
});

describe("manifests and media types", () => {
  const desc = (c: string, mediaType: string) => ({ mediaType, digest: D(c), size: 10 });
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
  it("reads images and indexes, from the body's mediaType or the shape", () => {
    const image = parseManifest(
      enc({
        schemaVersion: 2,
        config: desc("c", MediaType.ociConfig),
        layers: [desc("1", MediaType.ociLayerZstd)],
      }),
      "application/json",
      "m",
    );
    assert.equal(image.kind, "image");
    assert.equal(image.mediaType, MediaType.ociManifest);
    const index = parseManifest(
      enc({
        schemaVersion: 2,
        manifests: [
          { ...desc("2", MediaType.ociManifest), platform: { os: "linux", architecture: "amd64" } },
        ],
      }),
      MediaType.ociIndex,
      "m",
    );
    assert.equal(index.kind, "index");
    assert.deepEqual(index.kind === "index" && index.manifests[0]?.platform, {
      os: "linux",
      architecture: "amd64",
    });
    const list = parseManifest(
      enc({ schemaVersion: 2, manifests: [] }),
      MediaType.dockerManifestList,
      "m",
    );
    assert.equal(list.mediaType, MediaType.dockerManifestList);
  });
  it("refuses schema 1, unknown media types and malformed descriptors", () => {
    assert.throws(
      () =>
        parseManifest(
          enc({ schemaVersion: 1, fsLayers: [] }),
          MediaType.dockerSchema1Signed,
          "old",
        ),
      (e: unknown) => isCorralError(e, "UNSUPPORTED") && /schema 1/.test(e.message),
    );
    assert.throws(
      () =>
        parseManifest(enc({ mediaType: "application/vnd.cncf.helm.chart" }), undefined, "chart"),
      (e: unknown) =>
        isCorralError(e, "UNSUPPORTED") && /application\/vnd.cncf.helm.chart/.test(e.message),
    );
    const withDigest = (digest: string) =>
      enc({
        mediaType: MediaType.ociManifest,
        config: { ...desc("c", MediaType.ociConfig), digest },
        layers: [],
      });
    for (const digest of ["sha256:../../etc", "md5:abc", `sha256:${"A".repeat(64)}`]) {
      assert.throws(
        () => parseManifest(withDigest(digest), undefined, "m"),
        (e: unknown) => isCorralError(e, "REGISTRY"),
      );
    }
    assert.throws(
      () =>
        parseManifest(
          enc({
            mediaType: MediaType.ociManifest,
            config: { ...desc("c", "x"), size: -1 },
            layers: [],
          }),
          undefined,
          "m",
        ),
      /invalid size/,
    );
    assert.throws(() => parseManifest(Buffer.from("nope"), undefined, "m"), /not valid JSON/);
  });
  it("knows layer compressions", () => {
    assert.equal(layerCompression(MediaType.ociLayerGzip), "gzip");
    assert.equal(layerCompression(MediaType.ociLayerZstd), "zstd");
    assert.equal(layerCompression(MediaType.ociLayer), "none");
    assert.equal(layerCompression(MediaType.dockerLayerGzip), "gzip");
    assert.equal(layerCompression("application/vnd.oci.image.layer.v1.tar+lz4"), undefined);
  });
});
