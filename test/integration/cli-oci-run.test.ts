import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { pushBusyboxImage } from "../support/busybox-image.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { sandbox } from "./harness.js";

const box = sandbox();
let registry: TestRegistry;
let image: string;

before(async () => {
  registry = await startRegistry();
  image = (await pushBusyboxImage(registry.url, "test/busybox", "1")).reference;
});
after(async () => {
  await box.cleanup();
  await registry?.stop();
});

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

describe("running an OCI image", () => {
  it("pulls on first use and runs the command inside the image with its config applied", async () => {
    const r = await box.corral([
      "run",
      "--rm",
      image,
      "--",
      "sh",
      "-c",
      '. /etc/os-release; echo "$ID"; pwd; echo "$GREETING"; id -u; ls -ln /home | grep app; ' +
        "test -e /etc/remove-me && echo whiteout-ignored; ls /opt/old; readlink /bin/sh",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.toString().trim().split("\n");
    assert.equal(lines[0], "corral-test", "the root filesystem is the image's");
    assert.equal(lines[1], "/home/app", "WorkingDir applies");
    assert.equal(lines[2], "from-image", "Env applies");
    assert.equal(lines[3], "0");
    assert.match(lines[4] ?? "", /^d\S+\s+\d+\s+1000\s+1000\s.*app$/, "ownership survives");
    assert.equal(
      lines[5],
      "new.txt",
      "a whiteout removed /etc/remove-me; the opaque dir kept only its layer",
    );
    assert.match(lines[6] ?? "", /busybox$/, "symlinks survive");
  });

  it("runs the image's Cmd when no command is given", async () => {
    const r = await box.corral(["run", "--rm", image]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "default-cmd\n0\n");
  });

  it("keeps writes in the VM's overlay: they survive a restart, the cached image is untouched", async () => {
    const first = await box.corral([
      "run",
      "--name",
      "keep",
      image,
      "--",
      "sh",
      "-c",
      "echo kept > /data.txt",
    ]);
    assert.equal(first.code, 0, first.stderr);
    const vm = JSON.parse((await box.corral(["inspect", "keep"])).stdout.toString());
    const baseSum = sha256(vm.rootDisk.base);
    assert.equal((await box.corral(["start", "keep"])).code, 0);
    const read = await box.corral(["exec", "keep", "--", "cat", "/data.txt"]);
    assert.equal(read.stdout.toString(), "kept\n");
    const other = await box.corral([
      "run",
      "--rm",
      image,
      "--",
      "sh",
      "-c",
      "cat /data.txt 2>/dev/null || echo absent",
    ]);
    assert.equal(
      other.stdout.toString(),
      "absent\n",
      "another VM of the same image does not see it",
    );
    assert.equal((await box.corral(["rm", "-f", "keep"])).code, 0);
    assert.equal(sha256(vm.rootDisk.base), baseSum, "the cached rootfs never changes");
  });

  it("--disk-size grows the image's root filesystem in the guest; smaller is refused", async () => {
    const r = await box.corral([
      "run",
      "--rm",
      "--disk-size",
      "3G",
      image,
      "--",
      "sh",
      "-c",
      "df -k / | tail -1; dd if=/dev/zero of=/big bs=1M count=300 2>/dev/null && echo wrote",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [df, wrote] = r.stdout.toString().trim().split("\n");
    const totalKiB = Number(df?.trim().split(/\s+/)[1]);
    assert.ok(totalKiB > 2.5 * 1024 * 1024, `root is ${totalKiB} KiB, expected ~3 GiB`);
    assert.equal(wrote, "wrote", "more than the image's headroom fits");
    const small = await box.corral([
      "create",
      "--name",
      "tiny",
      "--disk-size",
      "64M",
      "--image",
      image,
    ]);
    assert.equal(small.code, 2);
    assert.match(small.stderr, /smaller than the image's .* root filesystem/);
    const builtin = await box.corral(["create", "--name", "tiny2", "--disk-size", "1G"]);
    assert.equal(builtin.code, 2);
    assert.match(builtin.stderr, /built-in image has no root disk/);
  });

  it("names an image that does not exist", async () => {
    const r = await box.corral(["run", "--rm", `${registry.host}/test/nothing:1`, "--", "true"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not found|unknown/i);
    const ls = JSON.parse((await box.corral(["ls", "--json"])).stdout.toString());
    assert.deepEqual(ls, []);
  });

  it("keeps an image's rootfs while a VM boots from it, even after image rm", async () => {
    assert.equal((await box.corral(["create", "--name", "pinned", "--image", image])).code, 0);
    const rm = await box.corral(["image", "rm", image]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.doesNotMatch(rm.stdout.toString(), /deleted/);
    const start = await box.corral(["start", "pinned"]);
    assert.equal(start.code, 0, start.stderr);
    const os = await box.corral(["exec", "pinned", "--", "cat", "/etc/os-release"]);
    assert.match(os.stdout.toString(), /ID=corral-test/);
    assert.equal((await box.corral(["rm", "-f", "pinned"])).code, 0);
  });
});
