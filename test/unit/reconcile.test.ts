import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { instancePaths } from "../../src/paths/layout.js";
import { parseSpec } from "../../src/spec/schema.js";
import { reconcile } from "../../src/vm/reconcile.js";
import type { VmRecord } from "../../src/vm/record.js";

function setup(overrides: Partial<VmRecord>) {
  process.env.CORRAL_STATE_DIR = mkdtempSync(join(tmpdir(), "corral-rec-"));
  const paths = instancePaths("box", "0123456789ab");
  mkdirSync(paths.dir, { recursive: true });
  const record: VmRecord = {
    version: 1,
    id: "0123456789ab",
    name: "box",
    spec: parseSpec({ name: "box" }),
    state: "starting",
    image: { name: "i", version: "1", digest: "d", kernel: "/k", initrd: "/i", cmdline: "" },
    guestCid: 3,
    desired: "running",
    createdAt: new Date().toISOString(),
    disks: [],
    ...overrides,
  };
  return { record, paths };
}

describe("reconcile", () => {
  it("leaves a start in progress alone", () => {
    const { record, paths } = setup({ startedAt: new Date().toISOString() });
    assert.equal(reconcile(record, paths).state, "starting");
  });

  it("fails a start that died before launching the VMM", () => {
    const { record, paths } = setup({ startedAt: new Date(Date.now() - 60_000).toISOString() });
    const next = reconcile(record, paths);
    assert.equal(next.state, "failed");
    assert.match(next.reason ?? "", /interrupted before the VMM was launched/);
  });

  it("records a VMM killed by a signal as failed, and a clean exit after stop as stopped", () => {
    const killed = setup({ state: "ready" });
    writeFileSync(
      killed.paths.exitFile,
      JSON.stringify({
        vmm: { exitCode: null, signal: 9 },
        reason: "vmm killed by signal 9",
        atMs: Date.now(),
      }),
    );
    const failed = reconcile(killed.record, killed.paths);
    assert.equal(failed.state, "failed");
    assert.equal(failed.reason, "vmm killed by signal 9");
    const stopping = setup({ state: "stopping", desired: "stopped", reason: "stopped by user" });
    writeFileSync(
      stopping.paths.exitFile,
      JSON.stringify({
        vmm: { exitCode: 0, signal: null },
        reason: "vmm exited with code 0",
        atMs: Date.now(),
      }),
    );
    const stopped = reconcile(stopping.record, stopping.paths);
    assert.equal(stopped.state, "stopped");
    assert.equal(stopped.reason, "stopped by user");
  });
});
