/**
 * UEFI (OVMF) with a persistent variable store, an installer ISO on a read-only CD-ROM and the
 * boot order disk-then-cdrom: the ISO boots while the disk is empty, "installs" a bootable
 * image onto the disk, and after a restart the installed disk boots, not the ISO.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildBootIso } from "../support/boot-iso.js";
import { sandbox } from "./harness.js";

const box = sandbox();
const dir = mkdtempSync(join(tmpdir(), "corral-uefi-"));
let installer: string;
let installed: string;
const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

before(async () => {
  installer = await buildBootIso(dir, "installer", "corral.boot=cdrom");
  installed = await buildBootIso(dir, "installed", "corral.boot=disk");
});
after(async () => {
  await box.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("UEFI and ISO boot", { timeout: 900_000 }, () => {
  it("boots the installer ISO while the disk is empty", async () => {
    const create = await box.corral([
      "create",
      "--name",
      "inst",
      "--firmware",
      "uefi",
      "--cdrom",
      installer,
      "--disk",
      "64M",
    ]);
    assert.equal(create.code, 0, create.stderr);
    const vars = join(box.stateDir, "vms", "inst", "efivars.fd");
    const template = sha("/usr/share/OVMF/OVMF_VARS_4M.fd");
    assert.equal(sha(vars), template, "each VM starts from OVMF's variable template");
    const start = await box.corral(["start", "inst"], { timeoutMs: 600_000 });
    assert.equal(start.code, 0, start.stderr);
    const cmdline = await box.corral(["exec", "inst", "--", "cat", "/proc/cmdline"]);
    assert.match(cmdline.stdout.toString(), /corral\.boot=cdrom/);
    // The CD-ROM is read-only for the guest.
    const write = await box.corral(["exec", "inst", "--", "sh", "-c", "ls /sys/block"]);
    assert.match(write.stdout.toString(), /vda/);
  });

  it("installs onto the disk; after a restart the disk boots first", async () => {
    const dd = await box.corral(
      [
        "exec",
        "-i",
        "inst",
        "--",
        "sh",
        "-c",
        "dd of=/dev/vda bs=1M 2>/dev/null && sync && echo installed",
      ],
      { input: readFileSync(installed) },
    );
    assert.equal(dd.code, 0, dd.stderr);
    assert.equal(dd.stdout.toString(), "installed\n");
    assert.equal((await box.corral(["stop", "inst"])).code, 0);
    const vars = join(box.stateDir, "vms", "inst", "efivars.fd");
    assert.notEqual(sha(vars), sha("/usr/share/OVMF/OVMF_VARS_4M.fd"), "OVMF wrote its variables");
    const start = await box.corral(["start", "inst"], { timeoutMs: 600_000 });
    assert.equal(start.code, 0, start.stderr);
    const cmdline = await box.corral(["exec", "inst", "--", "cat", "/proc/cmdline"]);
    assert.match(cmdline.stdout.toString(), /corral\.boot=disk/, "the installed disk booted");
  });

  it("rejects UEFI setups that cannot boot, naming the flag", async () => {
    const nothing = await box.corral(["create", "--name", "u1", "--firmware", "uefi"]);
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /firmware \(--firmware\): UEFI needs something to boot/);
    const bios = await box.corral(["create", "--name", "u2", "--firmware", "bios"]);
    assert.equal(bios.code, 2);
    assert.match(bios.stderr, /firmware \(--firmware\): /);
    const iso = await box.corral([
      "create",
      "--name",
      "u3",
      "--firmware",
      "uefi",
      "--cdrom",
      "/nope.iso",
    ]);
    assert.equal(iso.code, 2);
    assert.match(iso.stderr, /cdrom \(--cdrom\): \/nope\.iso does not exist/);
  });
});
