import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import {
  apiHost,
  formatReference,
  isLoopbackRegistry,
  parseReference,
} from "../../src/protocols/oci/reference.js";

const D = `sha256:${"a".repeat(64)}`;

describe("parseReference", () => {
  const ok: [string, string, Record<string, string | undefined>][] = [
    [
      "alpine",
      "docker.io/library/alpine:latest",
      { registry: "docker.io", repository: "library/alpine", tag: "latest" },
    ],
    ["alpine:3.20", "docker.io/library/alpine:3.20", { tag: "3.20" }],
    ["user/app", "docker.io/user/app:latest", { repository: "user/app" }],
    ["docker.io/alpine", "docker.io/library/alpine:latest", {}],
    ["index.docker.io/library/alpine:edge", "docker.io/library/alpine:edge", {}],
    ["registry-1.docker.io/user/app", "docker.io/user/app:latest", {}],
    ["ghcr.io/org/app:tag", "ghcr.io/org/app:tag", { registry: "ghcr.io", repository: "org/app" }],
    ["ghcr.io/org/team/app", "ghcr.io/org/team/app:latest", { repository: "org/team/app" }],
    ["localhost/x", "localhost/x:latest", { registry: "localhost", repository: "x" }],
    ["localhost:5000/x", "localhost:5000/x:latest", { registry: "localhost:5000" }],
    [`127.0.0.1:5000/x@${D}`, `127.0.0.1:5000/x@${D}`, { tag: undefined, digest: D }],
    [`alpine:3@${D}`, `docker.io/library/alpine:3@${D}`, { tag: "3", digest: D }],
    [`alpine@${D}`, `docker.io/library/alpine@${D}`, { tag: undefined }],
    ["[::1]:5000/img:v1", "[::1]:5000/img:v1", { registry: "[::1]:5000" }],
    [
      "my-registry.local:8443/a_b/c.d/e-f__g:V1.0_rc-1",
      "my-registry.local:8443/a_b/c.d/e-f__g:V1.0_rc-1",
      {},
    ],
    ["foo--bar/baz", "docker.io/foo--bar/baz:latest", {}],
    ["  alpine  ", "docker.io/library/alpine:latest", {}],
    ["Registry.Example.com/app", "Registry.Example.com/app:latest", {}],
    ["a/b/c", "docker.io/a/b/c:latest", {}],
    ["alpine:_under", "docker.io/library/alpine:_under", {}],
  ];
  for (const [input, canonical, fields] of ok) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const ref = parseReference(input);
      assert.equal(formatReference(ref), canonical);
      for (const [k, v] of Object.entries(fields)) {
        assert.equal((ref as unknown as Record<string, unknown>)[k], v, k);
      }
    });
  }

  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["Alpine", /lowercase.*"alpine"/],
    ["user/App:1", /lowercase.*"user\/app:1"/],
    ["alpine:", /not a valid tag/],
    ["alpine:-x", /not a valid tag/],
    [`alpine:${"t".repeat(129)}`, /not a valid tag/],
    ["alpine@sha256:abc", /not a valid digest/],
    [`alpine@md5:${"a".repeat(32)}`, /not a valid digest/],
    [`alpine@sha256:${"A".repeat(64)}`, /not a valid digest/],
    ["a//b", /empty component/],
    ["ghcr.io/", /empty component|missing/],
    [":tag", /missing/],
    ["-alpine", /not a valid repository name component/],
    ["alp ine", /whitespace/],
    ["a/b_/c", /not a valid repository name component/],
    ["a/b___c", /not a valid repository name component/],
    ["bad_host.io:xx/app", /not a valid registry host/],
    ["a".repeat(64).replace(/a/g, "f"), /image id/],
    [`ghcr.io/${"a".repeat(250)}`, /longer than 255/],
  ];
  for (const [input, pattern] of bad) {
    it(`rejects ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}...` : input)}`, () => {
      assert.throws(
        () => parseReference(input),
        (err: unknown) => {
          assert.ok(isCorralError(err, "INVALID_ARGUMENT"), String(err));
          assert.match(`${err.message} ${err.hint}`, pattern);
          assert.ok(err.message.includes(input.trim()), "names the reference");
          assert.ok(err.hint !== undefined && err.hint.length > 0, "says how to fix it");
          return true;
        },
      );
    });
  }
});

describe("registry hosts", () => {
  it("maps Docker Hub to its API host", () => {
    assert.equal(apiHost("docker.io"), "registry-1.docker.io");
    assert.equal(apiHost("ghcr.io"), "ghcr.io");
  });
  it("knows loopback registries", () => {
    for (const h of ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:1", "[::1]:5000"]) {
      assert.ok(isLoopbackRegistry(h), h);
    }
    for (const h of ["127.0.0.2:5000", "localhost.example.com", "ghcr.io", "[::2]:5000"]) {
      assert.ok(!isLoopbackRegistry(h), h);
    }
  });
});
