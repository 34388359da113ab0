import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ProgressEvent } from "../../src/base/progress.js";
import { isCorralError } from "../../src/errors.js";
import { fetchDeb } from "../../src/images/debian/fetch-deb.js";
import { loadIndex } from "../../src/images/debian/index.js";
import { cachePaths } from "../../src/paths/layout.js";
import { type FakeArchive, fakeArchive, makeDeb, sha256 } from "./debian-fixtures.js";

const retry = { attempts: 3, backoffMs: 5 };

describe("fetchDeb against a fake archive on 127.0.0.1", () => {
  let cache: string;
  let archive: FakeArchive;
  let good: Buffer;
  let bad: Buffer;
  const savedCache = process.env.CORRAL_CACHE_DIR;

  before(async () => {
    cache = mkdtempSync(join(tmpdir(), "corral-cache-"));
    process.env.CORRAL_CACHE_DIR = cache;
    good = await makeDeb([
      { name: "./usr/bin/hello", content: "#!/bin/sh\necho hi\n", mode: 0o755 },
    ]);
    bad = await makeDeb([{ name: "./usr/bin/evil", content: "tampered" }]);
    archive = await fakeArchive("testing", [
      { name: "hello", version: "1.0-1", deb: good },
      { name: "hello-meta", version: "2", deb: good, depends: "hello-1.0 (= 1)" },
      { name: "hello-1.0", version: "1", deb: good },
      { name: "tampered", version: "1", deb: bad, indexSha256: sha256(good) },
    ]);
  });
  after(async () => {
    await archive.close();
    rmSync(cache, { recursive: true, force: true });
    if (savedCache === undefined) delete process.env.CORRAL_CACHE_DIR;
    else process.env.CORRAL_CACHE_DIR = savedCache;
  });

  it("downloads, verifies and caches a package, reporting progress", async () => {
    const events: ProgressEvent[] = [];
    const deb = await fetchDeb({
      suite: "testing",
      name: "hello",
      mirror: archive.url,
      retry,
      onProgress: (e) => events.push(e),
    });
    assert.equal(deb.sha256, sha256(good));
    assert.equal(deb.version, "1.0-1");
    assert.equal(deb.path, cachePaths.deb(sha256(good)));
    assert.deepEqual(readFileSync(deb.path), good);
    assert.equal(deb.signatureVerified, false, "the fake archive is unsigned");
    const last = events.filter((e) => e.phase === "download" && e.label === "hello").pop();
    assert.deepEqual(last, {
      phase: "download",
      label: "hello",
      current: good.length,
      total: good.length,
      done: true,
    });
  });

  it("serves the index and the .deb from the cache the second time", async () => {
    const before = archive.requests.length;
    const deb = await fetchDeb({ suite: "testing", name: "hello", mirror: archive.url, retry });
    assert.equal(deb.sha256, sha256(good));
    assert.equal(archive.requests.length, before, "no request to the archive");
  });

  it("re-fetches the index on refresh", async () => {
    const before = archive.requests.length;
    await loadIndex({ suite: "testing", mirror: archive.url, refresh: true, retry });
    assert.ok(archive.requests.slice(before).includes("/dists/testing/Release"));
  });

  it("follows a metapackage's Depends to the concrete package", async () => {
    const deb = await fetchDeb({
      suite: "testing",
      name: "hello-meta",
      followDepends: /^hello-\d/,
      mirror: archive.url,
      retry,
    });
    assert.equal(deb.name, "hello-1.0");
  });

  it("rejects a checksum mismatch, leaving no temp file and nothing cached", async () => {
    await assert.rejects(
      fetchDeb({ suite: "testing", name: "tampered", mirror: archive.url, retry }),
      (e) => isCorralError(e, "CHECKSUM_MISMATCH") && /SHA-256/.test(e.message),
    );
    const files = readdirSync(cachePaths.debs());
    assert.deepEqual(files, [`${sha256(good)}.deb`], "only the good .deb, no temp files");
  });

  it("retries 5xx answers, then succeeds", async () => {
    rmSync(cachePaths.deb(sha256(good)));
    const path = [...archive.files.keys()].find((p) => p.includes("/hello_1.0-1"));
    assert.ok(path !== undefined);
    archive.failures.set(path, 2);
    const deb = await fetchDeb({ suite: "testing", name: "hello", mirror: archive.url, retry });
    assert.deepEqual(readFileSync(deb.path), good);
    assert.equal(archive.requests.filter((r) => r === path).length >= 3, true);
  });

  it("gives up after 3 tries with a DOWNLOAD error", async () => {
    rmSync(cachePaths.deb(sha256(good)));
    const path = [...archive.files.keys()].find((p) => p.includes("/hello_1.0-1"));
    assert.ok(path !== undefined);
    archive.failures.set(path, 5);
    await assert.rejects(
      fetchDeb({ suite: "testing", name: "hello", mirror: archive.url, retry }),
      (e) => isCorralError(e, "DOWNLOAD") && /3 tries/.test(e.message),
    );
    archive.failures.delete(path);
    assert.deepEqual(readdirSync(cachePaths.debs()), []);
  });

  it("reports a missing package and a missing suite clearly", async () => {
    await assert.rejects(
      fetchDeb({ suite: "testing", name: "absent", mirror: archive.url, retry }),
      (e) => isCorralError(e, "IMAGE_NOT_FOUND"),
    );
    await assert.rejects(
      loadIndex({ suite: "nosuch", mirror: archive.url, retry }),
      (e) => isCorralError(e, "DOWNLOAD") && /nosuch/.test(e.message),
    );
  });
});
