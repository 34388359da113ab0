import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isCorralError } from "../../src/errors.js";
import { parseEnvPairs, parseSpec } from "../../src/spec/schema.js";
import { formatSize, parseSize } from "../../src/spec/size.js";

describe("parseSize", () => {
  it("parses binary units and bare MiB", () => {
    assert.equal(parseSize("512M", "memory"), 512 * 1024 ** 2);
    assert.equal(parseSize("2G", "memory"), 2 * 1024 ** 3);
    assert.equal(parseSize("1.5GiB", "memory"), 1.5 * 1024 ** 3);
    assert.equal(parseSize("256", "memory"), 256 * 1024 ** 2);
    assert.equal(parseSize("64kb", "memory"), 64 * 1024);
  });
  it("rejects unknown units naming the field", () => {
    for (const bad of ["12XB", "", "M", "-1G", "1 2G", "0"]) {
      assert.throws(
        () => parseSize(bad, "memory"),
        (err) => isCorralError(err, "INVALID_ARGUMENT") && err.message.startsWith("memory:"),
        bad,
      );
    }
  });
  it("formats sizes", () => {
    assert.equal(formatSize(512 * 1024 ** 2), "512MiB");
    assert.equal(formatSize(1536 * 1024 ** 2), "1.5GiB");
    assert.equal(formatSize(12), "12B");
  });
});

describe("parseSpec", () => {
  it("applies defaults", () => {
    const spec = parseSpec({ name: "box" });
    assert.equal(spec.cpus, 1);
    assert.equal(spec.memory, 256);
    assert.equal(spec.accel, "auto");
    assert.equal(spec.machine, "q35");
    assert.deepEqual(spec.env, {});
  });
  it("converts memory to MiB", () => {
    assert.equal(parseSpec({ name: "box", memory: "1G" }).memory, 1024);
  });
  it("names the field of every error", () => {
    const cases: [unknown, string][] = [
      [{ name: "Bad Name" }, "name:"],
      [{ name: "box", memory: "12XB" }, "memory:"],
      [{ name: "box", memory: "16M" }, "memory:"],
      [{ name: "box", cpus: 0 }, "cpus:"],
      [{ name: "box", accel: "xen" }, "accel:"],
      [{ name: "box", env: { "1X": "y" } }, "env"],
      [{ name: "box", cmdline: ["a b"] }, "cmdline"],
      [{ name: "box", bogus: 1 }, "bogus: unknown field"],
      [{ name: "box", ports: [{ hostPort: 0, guestPort: 80 }] }, "ports[0].hostPort:"],
      [{ name: "box", diskSizeMiB: 1 }, "diskSizeMiB:"],
    ];
    for (const [input, prefix] of cases) {
      assert.throws(
        () => parseSpec(input),
        (err) =>
          isCorralError(err, "INVALID_SPEC") &&
          err.message.startsWith(prefix) &&
          err.message.startsWith(`${err.field}: `) &&
          err.field?.startsWith(prefix.replace(/:.*$/, "")) === true &&
          err.hint !== undefined &&
          !err.hint.includes("--"),
        JSON.stringify(input),
      );
    }
  });
  it("says what is wrong with a size once", () => {
    assert.throws(
      () => parseSpec({ name: "box", memory: "12XB" }),
      (err) => isCorralError(err) && err.message === 'memory: cannot parse size "12XB"',
    );
  });
  it("re-parses its own output unchanged (records are stored parsed)", () => {
    const spec = parseSpec({ name: "box", memory: "1G", env: { A: "1" } });
    assert.deepEqual(parseSpec(spec), spec);
  });
});

describe("parseEnvPairs", () => {
  it("splits on the first =", () => {
    assert.deepEqual(parseEnvPairs(["A=1", "B=x=y", "C="]), { A: "1", B: "x=y", C: "" });
  });
  it("rejects entries without a valid name", () => {
    for (const bad of ["A", "=1", "1A=2", "A-B=1"]) {
      assert.throws(
        () => parseEnvPairs([bad]),
        (err) => isCorralError(err, "INVALID_ARGUMENT"),
        bad,
      );
    }
  });
});

describe("parseDiskFlag", () => {
  it("reads sizes as new disks and everything else as files", async () => {
    const { parseDiskFlag } = await import("../../src/cli/options.js");
    assert.deepEqual(parseDiskFlag("10G"), { sizeMiB: 10240 });
    assert.deepEqual(parseDiskFlag("512M"), { sizeMiB: 512 });
    assert.deepEqual(parseDiskFlag("/srv/a.img:ro"), { path: "/srv/a.img", readOnly: true });
    assert.deepEqual(parseDiskFlag("/srv/a.img"), { path: "/srv/a.img", readOnly: false });
    assert.throws(
      () => parseDiskFlag("12XB"),
      (e) => isCorralError(e, "INVALID_ARGUMENT"),
    );
    assert.throws(
      () => parseDiskFlag(":ro"),
      (e) => isCorralError(e, "INVALID_ARGUMENT"),
    );
  });
});
