import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { flagFor, withFlag } from "../../src/cli/flags.js";
import { exitCodeFor } from "../../src/cli/render.js";
import { CorralError } from "../../src/errors.js";

describe("CLI errors", () => {
  it("exits 2 for bad input, 3 for a missing tool, 130 when cancelled, 1 otherwise", () => {
    const cases: [unknown, number][] = [
      [new CorralError("INVALID_ARGUMENT", "x"), 2],
      [new CorralError("INVALID_SPEC", "x"), 2],
      [new CorralError("CLOUD_INIT", "x"), 2],
      [new CorralError("TOOL_MISSING", "x"), 3],
      [new CorralError("CANCELLED", "interrupted"), 130],
      [new DOMException("This operation was aborted", "AbortError"), 130],
      [new CorralError("VM_NOT_FOUND", "x"), 1],
      [new CorralError("POOL_NOT_FOUND", "x"), 1],
      [new CorralError("SNAPSHOT_DAMAGED", "x"), 1],
      [new CorralError("VM_STATE", "x"), 1],
      [new CorralError("NOT_READY", "x"), 1],
      [new Error("a bug"), 1],
      ["a string", 1],
    ];
    for (const [err, code] of cases) assert.equal(exitCodeFor(err), code, String(err));
  });

  it("names the flag of a spec field", () => {
    assert.equal(flagFor("memory"), "--memory");
    assert.equal(flagFor("diskSizeMiB"), "--disk-size");
    assert.equal(flagFor("ports[1].hostPort"), "-p");
    assert.equal(flagFor("allowHosts[0]"), "--allow-host");
    assert.equal(flagFor("cloudInit.users[0].name"), "--cloud-init");
    assert.equal(flagFor("backend"), undefined);
    assert.equal(flagFor("pool.name"), undefined);
    assert.equal(flagFor("constructor"), undefined);
  });

  it("puts the flag next to the field", () => {
    assert.equal(
      withFlag("memory: must be between 64M and 256G", "memory"),
      "memory (--memory): must be between 64M and 256G",
    );
    assert.equal(
      withFlag("ports[1]: host port 80 clashes", "ports[1]"),
      "ports[1] (-p): host port 80 clashes",
    );
    assert.equal(
      withFlag("the disk is too small", "diskSizeMiB"),
      "the disk is too small (--disk-size)",
    );
    assert.equal(withFlag("pool.size: at most 64 VMs", "pool.size"), "pool.size: at most 64 VMs");
    assert.equal(withFlag("no VM named x", undefined), "no VM named x");
  });
});
