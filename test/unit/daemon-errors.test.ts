/**
 * The daemon's HTTP error mapping: the status comes from the error's kind, and the client
 * rebuilds the same CorralError from the body. The second part runs the real daemon in this
 * process on a socket under a temporary state directory (no VM, no VMM involved).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client } from "undici";
import { DaemonClient, errorFromBody } from "../../src/daemon/client.js";
import { Daemon, errorReply } from "../../src/daemon/daemon.js";
import { Pools } from "../../src/daemon/pools.js";
import { CorralError, isCorralError } from "../../src/errors.js";
import { daemonPaths, runRoot } from "../../src/paths/layout.js";
import type { Manager } from "../../src/vm/manager.js";

describe("daemon error mapping", () => {
  it("answers 404 for a pool that does not exist", async () => {
    const pools = new Pools({} as Manager, () => {});
    const err = await pools.remove("ghost").catch((e: unknown) => e);
    assert.ok(isCorralError(err, "POOL_NOT_FOUND"));
    const { status, body } = errorReply(err);
    assert.equal(status, 404);
    assert.equal(body.kind, "not-found");
    assert.equal(body.code, "POOL_NOT_FOUND");
  });

  it("derives every status from the kind", () => {
    const cases: [CorralError, number][] = [
      [new CorralError("INVALID_SPEC", "memory: bad", { field: "memory" }), 400],
      [new CorralError("VM_NOT_FOUND", "x"), 404],
      [new CorralError("POOL_EXISTS", "x"), 409],
      [new CorralError("VM_STATE", "x"), 409],
      [new CorralError("PORT_IN_USE", "x"), 409],
      [new CorralError("UNSUPPORTED", "x"), 501],
      [new CorralError("TOOL_MISSING", "x"), 503],
      [new CorralError("NOT_READY", "x"), 504],
      [new CorralError("CANCELLED", "x"), 499],
      [new CorralError("VM_FAILED", "x"), 500],
    ];
    for (const [err, status] of cases) assert.equal(errorReply(err).status, status, err.code);
    assert.equal(errorReply(new TypeError("bug")).status, 500);
    assert.equal(errorReply(new TypeError("bug")).body.kind, "internal");
  });

  it("rebuilds the CorralError with code, hint and field from the body", () => {
    const sent = new CorralError("INVALID_SPEC", "ports: pool VMs cannot share host ports", {
      field: "ports",
      hint: "leave them out",
      details: { n: 1 },
    });
    const got = errorFromBody(JSON.parse(JSON.stringify(errorReply(sent).body)), 400);
    assert.deepEqual(got.toJSON(), sent.toJSON());
    const unknown = errorFromBody({ code: "FROM_THE_FUTURE", kind: "exists", message: "m" }, 409);
    assert.equal(unknown.code, "DAEMON");
    assert.equal(unknown.details?.code, "FROM_THE_FUTURE");
    assert.equal(errorFromBody("not json", 502).message, "the daemon answered HTTP 502");
  });
});

describe("daemon API errors over its socket", () => {
  const saved = process.env.CORRAL_STATE_DIR;
  const state = mkdtempSync(join(tmpdir(), "corral-daemon-errors-"));
  let daemon: Daemon;

  before(async () => {
    process.env.CORRAL_STATE_DIR = state;
    daemon = new Daemon({ idleMs: 0 });
    await daemon.listen();
  });

  after(async () => {
    await daemon.close();
    // The run directory is derived from the temporary state root: this test's alone.
    rmSync(runRoot(), { recursive: true, force: true });
    if (saved === undefined) delete process.env.CORRAL_STATE_DIR;
    else process.env.CORRAL_STATE_DIR = saved;
    rmSync(state, { recursive: true, force: true });
  });

  it("DELETE /v1/pools/ghost answers 404 not-found", async () => {
    const client = new Client("http://corral-daemon", { socketPath: daemonPaths().socket });
    try {
      const res = await client.request({ method: "DELETE", path: "/v1/pools/ghost" });
      const body = (await res.body.json()) as Record<string, unknown>;
      assert.equal(res.statusCode, 404);
      assert.equal(body.kind, "not-found");
      assert.equal(body.code, "POOL_NOT_FOUND");
      assert.equal(body.message, 'no pool named "ghost"');
    } finally {
      await client.close();
    }
  });

  it("the client throws the daemon's CorralError", async () => {
    const client = await DaemonClient.ifRunning();
    assert.ok(client !== undefined);
    try {
      const err = await client.request("DELETE", "/v1/pools/ghost").catch((e: unknown) => e);
      assert.ok(isCorralError(err, "POOL_NOT_FOUND"));
      assert.equal(err.kind, "not-found");
      assert.match(err.hint ?? "", /pool/);
      const bad = await client
        .request("POST", "/v1/pools", { name: "web", size: 1, spec: { memory: "1M" } })
        .catch((e: unknown) => e);
      assert.ok(isCorralError(bad, "INVALID_SPEC"));
      assert.equal(bad.field, "memory");
    } finally {
      await client.close();
    }
  });
});
