/**
 * Builds (or finds) the real default image in the shared cache, and boots it under QEMU TCG.
 * The first run downloads the kernel and busybox from the Debian mirror apt uses.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { buildDefaultImage, findDefaultImage } from "../../src/images/default-image.js";
import type { ImageInfo } from "../../src/images/image-info.js";
import { findPvhEntry } from "../../src/images/kernel.js";
import { imageInfoSchema, listImages } from "../../src/images/store.js";

interface Boot {
  serial: string;
  readyAfterMs: number | undefined;
  poweredOff: boolean;
}

/** Boots the image on q35 + TCG, waits for the init's READY line, then presses the power button. */
async function bootAndPowerOff(image: ImageInfo, timeoutMs = 90_000): Promise<Boot> {
  const dir = await mkdtemp(join(tmpdir(), "corral-boot-"));
  const monitor = join(dir, "mon.sock");
  const started = Date.now();
  const qemu = spawn(
    "qemu-system-x86_64",
    [
      ["-machine", "q35,accel=tcg"],
      ["-cpu", "max", "-smp", "2", "-m", "256"],
      ["-display", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"],
      ["-monitor", `unix:${monitor},server=on,wait=off`],
      ["-kernel", image.kernel, "-initrd", image.initrd],
      ["-append", `${image.cmdline} corral.hostname=imagetest`],
    ].flat(),
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let serial = "";
  let readyAfterMs: number | undefined;
  const exited = new Promise<void>((resolve) => qemu.on("exit", () => resolve()));
  qemu.stdout.on("data", (d: Buffer) => {
    serial += d.toString("utf8");
    if (readyAfterMs === undefined && serial.includes("corral-init: ready")) {
      readyAfterMs = Date.now() - started;
    }
  });
  qemu.stderr.on("data", (d: Buffer) => {
    serial += d.toString("utf8");
  });
  try {
    const deadline = Date.now() + timeoutMs;
    while (readyAfterMs === undefined && qemu.exitCode === null && Date.now() < deadline) {
      await sleep(50);
    }
    if (readyAfterMs === undefined) return { serial, readyAfterMs, poweredOff: false };
    // Give acpid a moment: it starts right before the READY line.
    await sleep(300);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(monitor, () => sock.end("system_powerdown\n"));
      sock.on("error", reject);
      sock.on("close", () => resolve());
      sock.resume();
    });
    const poweredOff = await Promise.race([
      exited.then(() => true),
      sleep(30_000).then(() => false),
    ]);
    return { serial, readyAfterMs, poweredOff };
  } finally {
    // A hung TCG guest spins a whole core: never leave QEMU behind.
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill("SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("default image", { timeout: 15 * 60_000 }, () => {
  let image: ImageInfo;
  const savedMirror = process.env.CORRAL_DEBIAN_MIRROR;
  after(() => {
    if (savedMirror === undefined) delete process.env.CORRAL_DEBIAN_MIRROR;
    else process.env.CORRAL_DEBIAN_MIRROR = savedMirror;
  });

  it("builds (or is found) with a valid image.json", async () => {
    image = await buildDefaultImage();
    const json: unknown = JSON.parse(readFileSync(join(image.dir, "image.json"), "utf8"));
    const parsed = imageInfoSchema.parse(json);
    assert.equal(parsed.digest, image.digest);
    assert.equal(image.name, "corral-default");
    assert.match(image.kernelRelease, /^6\.1\.0-\d+-amd64$/);
    assert.ok(image.version.startsWith(`${image.kernelRelease}+bb`));
    assert.match(image.cmdline, /console=ttyS0/);
    assert.deepEqual(findDefaultImage(), image);
    assert.ok(listImages("corral-default").some((i) => i.digest === image.digest));
  });

  it("rebuilds as a no-op without touching the network", async () => {
    // Port 9 (discard) is closed here: any download attempt would fail the build.
    process.env.CORRAL_DEBIAN_MIRROR = "http://127.0.0.1:9";
    const again = await buildDefaultImage();
    assert.equal(again.digest, image.digest);
    assert.equal(again.createdAt, image.createdAt);
  });

  it("has a kernel with a PVH entry note", () => {
    assert.ok(findPvhEntry(readFileSync(image.kernel)) !== undefined);
  });

  it("boots to corral-init: ready on q35/TCG and powers off on the ACPI power button", async (t) => {
    const boot = await bootAndPowerOff(image);
    t.diagnostic(`ready after ${boot.readyAfterMs} ms (QEMU start to READY line)`);
    assert.ok(boot.serial.includes("corral-init: start"), boot.serial);
    assert.ok(boot.readyAfterMs !== undefined, `no READY line:\n${boot.serial}`);
    assert.doesNotMatch(boot.serial, /insmod .* failed/);
    const modules = (image.inputs.bootModules as string[]).length;
    assert.ok(boot.serial.includes(`corral-init: ${modules} modules loaded`), boot.serial);
    assert.ok(boot.poweredOff, `QEMU did not exit after system_powerdown:\n${boot.serial}`);
  });
});
