import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import { BUSYBOX_IMAGE_CONFIG, pushBusyboxImage } from "../support/busybox-image.js";
import { pushImage } from "../support/oci-push.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { tarBuffer } from "../support/tar-fixtures.js";
import { sandbox } from "./harness.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const box = sandbox();
// A private cache: prune deletes every blob no pulled image uses, and must not touch the user's.
const cache = mkdtempSync(join(tmpdir(), "corral-image-cache-"));
const env = { ...box.env, CORRAL_CACHE_DIR: cache };
const corral = (args: string[]) => box.corral(args, { env, timeoutMs: 60_000 });

let registry: TestRegistry;
let ref: string;
let digest: string;

before(async () => {
  registry = await startRegistry();
  const pushed = await pushBusyboxImage(registry.url, "test/busybox", "1");
  ref = pushed.reference;
  digest = pushed.manifestDigest;
});
after(async () => {
  await box.cleanup();
  await registry?.stop();
  rmSync(cache, { recursive: true, force: true });
});

interface LsRow {
  kind: string;
  reference?: string;
  manifestDigest?: string;
  rootfs?: string;
}

async function ls(): Promise<LsRow[]> {
  const r = await corral(["image", "ls", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as LsRow[];
}

describe("corral image", () => {
  let rootfs: string;

  it("pulls with one progress line per layer, then lists and inspects the image", async () => {
    const r = await corral(["image", "pull", ref]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout.toString(),
      new RegExp(`^pulled: ${ref} \\(${digest.slice(7, 19)}, linux/amd64`),
    );
    const layerLines = r.stderr.split("\n").filter((l) => /^[0-9a-f]{12}: pulled .* in \d/.test(l));
    assert.equal(layerLines.length, 2, r.stderr);
    assert.match(r.stderr, /rootfs: ext4 image built/);

    const row = (await ls()).find((i) => i.kind === "oci" && i.reference === ref);
    assert.ok(row, "image ls lists the pulled image");
    assert.equal(row.manifestDigest, digest);
    rootfs = row.rootfs ?? "";
    assert.ok(existsSync(rootfs));

    const inspect = await corral(["image", "inspect", ref, "--json"]);
    assert.equal(inspect.code, 0, inspect.stderr);
    const image = JSON.parse(inspect.stdout.toString());
    assert.deepEqual(image.config, BUSYBOX_IMAGE_CONFIG);
    assert.equal(image.layers, 2);
    assert.equal(image.rootfs, rootfs);

    const text = await corral(["image", "inspect", digest.slice(7, 21)]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout.toString(), /workdir: \/home\/app\n/);
    assert.match(text.stdout.toString(), /cmd: \["sh","-c","echo default-cmd; id -u"\]/);
  });

  it("a second pull reuses blobs and rootfs", async () => {
    const r = await corral(["image", "pull", ref, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const pulled = JSON.parse(r.stdout.toString());
    assert.equal(pulled.cached, true);
    assert.equal(pulled.manifestDigest, digest);
    const text = await corral(["image", "pull", ref]);
    assert.match(text.stdout.toString(), /^up to date: /);
    assert.match(text.stderr, /rootfs: up to date/);
  });

  it("rm drops the image and its rootfs; prune frees the blobs", async () => {
    const r = await corral(["image", "rm", ref]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), new RegExp(`removed ${ref} \\(deleted`));
    assert.equal(
      (await ls()).some((i) => i.reference === ref),
      false,
    );
    assert.equal(existsSync(rootfs), false);

    const prune = await corral(["image", "prune", "--json"]);
    assert.equal(prune.code, 0, prune.stderr);
    const result = JSON.parse(prune.stdout.toString());
    assert.equal(result.removed.blobs.length, 2);
    assert.ok(result.freedBytes > 1_000_000);
  });

  it("prune frees a rootfs no reference points at (a pull killed before recording it)", async () => {
    assert.equal((await corral(["image", "pull", "-q", ref])).code, 0);
    writeFileSync(join(cache, "images", "oci", "refs.json"), '{"version":1,"refs":{}}');
    const prune = await corral(["image", "prune", "--json"]);
    const result = JSON.parse(prune.stdout.toString());
    assert.deepEqual(result.removed.images, [digest]);
    assert.equal(existsSync(rootfs), false);
  });

  it("a pull SIGKILLed mid-layer leaves no blob behind; the next pull starts clean", async () => {
    const tar = await tarBuffer([{ name: "big.bin", data: randomBytes(3 * 1024 * 1024) }]);
    const layer = gzipSync(tar, { level: 1 });
    const layerHex = createHash("sha256").update(layer).digest("hex");
    await pushImage(registry.url, "test/slow", "v1", {
      layers: [{ data: layer, mediaType: GZIP }],
    });
    // A proxy that sends blobs slowly (64 KiB every 20 ms), so the kill lands mid-layer.
    const proxy = createServer((req, res) => {
      const upstream = httpRequest(
        `${registry.url}${req.url}`,
        { method: req.method, headers: req.headers },
        async (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          for await (const chunk of up) {
            for (let i = 0; i < chunk.length; i += 65536) {
              if (!res.write(chunk.subarray(i, i + 65536))) await once(res, "drain");
              if (req.url?.includes("/blobs/")) await sleep(20);
            }
          }
          res.end();
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const blobs = join(cache, "blobs", "sha256");
    const temps = () => readdirSync(blobs).filter((f) => f.startsWith(`.${layerHex}.`));
    try {
      const child = box.spawnCorral(["image", "pull", `${host}/test/slow:v1`], { env });
      const deadline = Date.now() + 60_000;
      while (
        !existsSync(blobs) ||
        temps().length === 0 ||
        statSync(join(blobs, temps()[0]!)).size < 256 * 1024
      ) {
        assert.ok(Date.now() < deadline, "the layer download never started");
        await sleep(20);
      }
      child.kill("SIGKILL");
      await once(child, "close");
      assert.ok(!existsSync(join(blobs, layerHex)), "no blob under the layer's digest");
      assert.equal(temps().length, 1, "the killed pull's partial download is a temp file only");
      const again = await corral(["image", "pull", `${host}/test/slow:v1`]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(
        createHash("sha256")
          .update(readFileSync(join(blobs, layerHex)))
          .digest("hex"),
        layerHex,
      );
      assert.deepEqual(temps(), [], "the dead pull's temp file was swept");
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it("explains bad references, unknown tags and unknown images", async () => {
    const upper = await corral(["image", "pull", "UPPER/case"]);
    assert.equal(upper.code, 2);
    assert.match(upper.stderr, /repository names must be lowercase/);
    assert.match(upper.stderr, /hint: write "upper\/case"/);

    const missing = await corral(["image", "pull", `${registry.host}/test/busybox:nope`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not found/);
    assert.match(missing.stderr, /hint: check the image name and tag/);

    const inspect = await corral(["image", "inspect", "busybox"]);
    assert.equal(inspect.code, 1);
    assert.match(inspect.stderr, /no image "busybox"/);
    assert.match(inspect.stderr, /hint: pull it first: corral image pull busybox/);

    const rm = await corral(["image", "rm", "busybox"]);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /no pulled image "busybox"/);
  });
});
