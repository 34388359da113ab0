/**
 * A cloud image with REAL cloud-init: a Debian 12 guest built with debootstrap (systemd,
 * cloud-init 22.4, the cloud kernel; test/support/cloud-guest.ts, cached), booted with its own
 * kernel and corral's NoCloud seed. cloud-init creates the user, writes the files, runs the
 * commands and installs corral's agent, through which every check below runs. Slow under TCG
 * (about a minute per boot).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { type CloudGuest, ensureCloudGuest } from "../support/cloud-guest.js";
import { sandbox } from "./harness.js";

const box = sandbox();
const dir = mkdtempSync(join(tmpdir(), "corral-cloud-"));
const KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVjb3JyYWx0ZXN0a2V5b25seWZvcnRlc3RzMTIz test@corral";
let guest: CloudGuest;

before(async () => {
  guest = await ensureCloudGuest();
});
after(async () => {
  await box.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function exec(script: string) {
  const r = await box.corral(["exec", "cloud", "--", "sh", "-c", script]);
  assert.equal(r.code, 0, `${script}: ${r.stderr}`);
  return r.stdout.toString();
}

describe("cloud images with cloud-init", { timeout: 1_500_000 }, () => {
  it("boots with its own kernel; cloud-init applies users, keys, files and commands", async () => {
    const userData = join(dir, "cloud-init.yaml");
    writeFileSync(
      userData,
      stringify({
        hostname: "cloudy",
        users: [{ name: "dev", sudo: true, shell: "/bin/bash", sshAuthorizedKeys: [KEY] }],
        writeFiles: [
          {
            path: "/etc/corral-test.txt",
            content: "written by cloud-init\n",
            permissions: "0640",
            owner: "dev:dev",
          },
        ],
        runcmd: ["echo ran >> /var/tmp/runcmd.log", ["touch", "/var/tmp/argv-form"]],
      }),
    );
    const kernelArgs = guest.cmdline.split(" ").flatMap((arg) => ["--kernel-arg", arg]);
    const create = await box.corral([
      "create",
      "--name",
      "cloud",
      "--cloud-image",
      guest.disk,
      "--kernel",
      guest.kernel,
      "--initrd",
      guest.initrd,
      ...kernelArgs,
      "--cloud-init",
      userData,
      "--memory",
      "1G",
      "--cpus",
      "2",
      "--disk-size",
      "3G",
    ]);
    assert.equal(create.code, 0, create.stderr);
    const start = await box.corral(["start", "cloud"], { timeoutMs: 900_000 });
    assert.equal(start.code, 0, start.stderr);

    assert.match(await exec("cloud-init status --wait"), /status: done/);
    assert.equal(await exec("hostname"), "cloudy\n");
    assert.match(await exec("id dev"), /^uid=\d+\(dev\) gid=\d+\(dev\)/);
    assert.equal(await exec("cat /home/dev/.ssh/authorized_keys"), `${KEY}\n`);
    assert.match(
      await exec("cat /etc/sudoers.d/90-cloud-init-users"),
      /dev ALL=\(ALL\) NOPASSWD:ALL/,
    );
    assert.equal(
      await exec("stat -c '%a %U:%G' /etc/corral-test.txt; cat /etc/corral-test.txt"),
      "640 dev:dev\nwritten by cloud-init\n",
    );
    assert.equal(
      await exec("cat /var/tmp/runcmd.log; ls /var/tmp/argv-form"),
      "ran\n/var/tmp/argv-form\n",
    );
    // The seed was found on the read-only second disk, labelled cidata.
    assert.match(await exec("blkid /dev/vdb"), /LABEL="cidata" .*TYPE="iso9660"/);
    // --disk-size: cloud-init's resize_rootfs grew the root filesystem to the larger overlay.
    const size = Number((await exec("df -k --output=size / | tail -1")).trim());
    assert.ok(size > 2.5 * 1024 * 1024, `root is ${size} KiB`);
  });

  it("a restart keeps the instance-id: per-instance modules do not run twice", async () => {
    const before = await exec("cat /var/lib/cloud/data/instance-id");
    assert.match(before, /^corral-[0-9a-f]{12}-[0-9a-f]{16}\n$/);
    assert.equal((await box.corral(["stop", "cloud", "--timeout", "60"])).code, 0);
    const start = await box.corral(["start", "cloud"], { timeoutMs: 900_000 });
    assert.equal(start.code, 0, start.stderr);
    await exec("cloud-init status --wait");
    assert.equal(await exec("cat /var/lib/cloud/data/instance-id"), before);
    assert.equal(await exec("cat /var/tmp/runcmd.log"), "ran\n", "runcmd ran once");
  });

  it("refuses cloud images without a way to boot them, naming the flags", async () => {
    const r = await box.corral(["create", "--name", "nokernel", "--cloud-image", guest.disk]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /cloudImage \(--cloud-image\): a cloud image boots its own kernel: with UEFI firmware, or from a given kernel and initrd/,
    );
    const ci = await box.corral([
      "create",
      "--name",
      "ci",
      "--cloud-init",
      join(dir, "cloud-init.yaml"),
    ]);
    assert.equal(ci.code, 2);
    assert.match(ci.stderr, /cloudInit \(--cloud-init\): cloud-init runs in cloud images/);
    const missing = await box.corral([
      "create",
      "--name",
      "m",
      "--cloud-image",
      join(dir, "nope.qcow2"),
      "--firmware",
      "uefi",
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read the disk image/);
  });
});
