import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseAccelerator } from "../../src/drivers/qemu/accel.js";
import { isCorralError } from "../../src/errors.js";

const linux = (kvm: boolean, flags: string) => ({
  platform: "linux" as const,
  kvmDeviceUsable: kvm,
  cpuFlags: flags,
});

describe("chooseAccelerator", () => {
  it("never picks KVM just because /dev/kvm opens", () => {
    const choice = chooseAccelerator("auto", linux(true, " fpu sse2 hypervisor"));
    assert.equal(choice.accel, "tcg");
    assert.match(choice.reason, /vmx\/svm/);
  });
  it("picks KVM with /dev/kvm and vmx or svm", () => {
    assert.equal(chooseAccelerator("auto", linux(true, " fpu vmx sse2")).accel, "kvm");
    assert.equal(chooseAccelerator("auto", linux(true, " svm")).accel, "kvm");
  });
  it("falls back to TCG without /dev/kvm", () => {
    assert.equal(chooseAccelerator("auto", linux(false, " vmx")).accel, "tcg");
  });
  it("uses HVF on macOS", () => {
    assert.equal(
      chooseAccelerator("auto", { platform: "darwin", kvmDeviceUsable: false, cpuFlags: "" }).accel,
      "hvf",
    );
  });
  it("honours explicit choices and refuses impossible ones", () => {
    assert.equal(chooseAccelerator("tcg", linux(true, " vmx")).accel, "tcg");
    assert.equal(chooseAccelerator("kvm", linux(true, "")).accel, "kvm");
    assert.throws(
      () => chooseAccelerator("kvm", linux(false, " vmx")),
      (e) => isCorralError(e, "UNSUPPORTED"),
    );
    assert.throws(
      () => chooseAccelerator("hvf", linux(true, " vmx")),
      (e) => isCorralError(e, "UNSUPPORTED"),
    );
  });
});
