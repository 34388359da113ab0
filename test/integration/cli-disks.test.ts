import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { sandbox } from "./harness.js";

const box = sandbox();
after(() => box.cleanup());

const names = async () =>
  JSON.parse((await box.corral(["ls", "--json"])).stdout.toString()).map(
    (vm: { name: string }) => vm.name,
  );

describe("data disks", () => {
  it("attaches a new empty disk of the asked size", async () => {
    const r = await box.corral([
      "run",
      "--rm",
      "--disk",
      "64M",
      "--",
      "sh",
      "-c",
      "cat /sys/block/vda/size /sys/block/vda/ro; echo data | dd of=/dev/vda bs=512 count=1 conv=sync 2>/dev/null; head -c 4 /dev/vda",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "131072\n0\ndata");
  });

  it("attaches an existing image read-only with :ro", async () => {
    const image = join(box.stateDir, "existing.img");
    const content = Buffer.alloc(8 * 1024 * 1024);
    content.write("hello-disk");
    writeFileSync(image, content);
    const r = await box.corral([
      "run",
      "--rm",
      "--disk",
      `${image}:ro`,
      "--",
      "sh",
      "-c",
      "head -c 10 /dev/vda; echo; cat /sys/block/vda/ro; echo x | dd of=/dev/vda 2>/dev/null && echo wrote || echo refused",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "hello-disk\n1\nrefused\n");
  });

  it("names a missing disk file and creates nothing", async () => {
    const r = await box.corral(["create", "--name", "nodisk", "--disk", "/nonexistent/disk.img"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /disks\[0\] \(--disk\): cannot read the disk image \/nonexistent\/disk.img/,
    );
    assert.deepEqual(await names(), []);
  });
});

describe("clone", () => {
  it("copies a stopped VM's disks; the copies are independent", async () => {
    assert.equal((await box.corral(["create", "--name", "orig", "--disk", "16M"])).code, 0);
    assert.equal((await box.corral(["start", "orig"])).code, 0);
    const write = (vm: string, text: string) =>
      box.corral([
        "exec",
        vm,
        "--",
        "sh",
        "-c",
        `echo ${text} | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null`,
      ]);
    const read = async (vm: string) =>
      (await box.corral(["exec", vm, "--", "head", "-c", "6", "/dev/vda"])).stdout.toString();
    assert.equal((await write("orig", "first")).code, 0);
    const refused = await box.corral(["clone", "orig", "copy"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /stop it first/);
    assert.equal((await box.corral(["stop", "orig"])).code, 0);
    const cloned = await box.corral(["clone", "orig", "copy"]);
    assert.equal(cloned.code, 0, cloned.stderr);
    assert.equal((await box.corral(["start", "copy"])).code, 0);
    assert.equal(await read("copy"), "first\n");
    assert.equal((await write("copy", "later")).code, 0);
    assert.equal((await box.corral(["start", "orig"])).code, 0);
    assert.equal(await read("orig"), "first\n", "the clone's writes never reach the source");
    assert.equal((await box.corral(["rm", "-f", "orig", "copy"])).code, 0);
  });
});
