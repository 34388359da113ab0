import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { sandbox } from "./harness.js";

// One private state directory per file; cleanup() also proves no process of it survives.
const box = sandbox();
after(() => box.cleanup());

describe("host commands", () => {
  it("doctor reports every dependency and the accelerator with its reason", async () => {
    const r = await box.corral(["doctor", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.toString());
    const names = report.checks.map((c: { name: string }) => c.name);
    for (const name of [
      "node",
      "qemu-system-x86_64",
      "qemu-img",
      "vhost-device-vsock",
      "default image",
    ]) {
      assert.ok(names.includes(name), name);
    }
    assert.ok(report.ok);
    // This machine (and CI) has /dev/kvm without vmx/svm: TCG with a reason.
    assert.ok(["tcg", "kvm"].includes(report.accelerator.accel));
    assert.ok(report.accelerator.reason.length > 0);
  });

  it("setup without the host tools names them and the apt-get line, and exits non-zero", async () => {
    const emptyPath = mkdtempSync(join(tmpdir(), "corral-nopath-"));
    const r = await box.corral(["setup", "-q"], { env: { ...box.env, PATH: emptyPath } });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /missing host tools: qemu-system-x86_64, qemu-img/);
    assert.match(r.stderr, /apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils/);
    const doctor = await box.corral(["doctor"], { env: { ...box.env, PATH: emptyPath } });
    assert.equal(doctor.code, 1);
    assert.match(doctor.stdout.toString(), /MISSING qemu-system-x86_64/);
    assert.match(doctor.stdout.toString(), /fix: apt-get install qemu-system-x86/);
  });

  it("setup is a no-op the second time and image ls shows the image", async () => {
    const r = await box.corral(["setup", "--dev", "--json", "-q"]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout.toString());
    assert.deepEqual(result.installedPackages, []);
    const images = JSON.parse((await box.corral(["image", "ls", "--json"])).stdout.toString());
    const current = images.find((i: { digest: string }) => i.digest === result.image.digest);
    assert.ok(current, "image ls lists the image setup returned");
    assert.match(current.version, /^6\.1\.0-\d+-amd64\+bb/);
  });
});
