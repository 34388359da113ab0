import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  asCorralError,
  CorralError,
  cancelled,
  ERROR_CODES,
  ERROR_KINDS,
  exitCode,
  httpStatus,
  isCorralError,
  isErrorCode,
  throwIfCancelled,
} from "../../src/errors.js";

describe("error kinds", () => {
  it("gives every code exactly one known kind", () => {
    const codes = Object.keys(ERROR_CODES);
    assert.ok(codes.length > 40, `only ${codes.length} codes`);
    for (const code of codes) {
      assert.ok(isErrorCode(code), code);
      const kind = ERROR_CODES[code as keyof typeof ERROR_CODES];
      assert.ok(ERROR_KINDS.includes(kind), `${code} -> ${kind}`);
      assert.equal(new CorralError(code as keyof typeof ERROR_CODES, "x").kind, kind, code);
    }
    assert.equal(isErrorCode("POOL"), false, "POOL was split into POOL_*");
    assert.equal(isErrorCode("toString"), false, "inherited names are no codes");
  });

  it("keeps the ambiguous codes apart", () => {
    const kinds = Object.fromEntries(
      [
        "SNAPSHOT_NOT_FOUND",
        "SNAPSHOT_EXISTS",
        "SNAPSHOT_IN_USE",
        "POOL_NOT_FOUND",
        "POOL_EMPTY",
      ].map((code) => [code, new CorralError(code as "POOL_EMPTY", "x").kind]),
    );
    assert.deepEqual(kinds, {
      SNAPSHOT_NOT_FOUND: "not-found",
      SNAPSHOT_EXISTS: "exists",
      SNAPSHOT_IN_USE: "conflict",
      POOL_NOT_FOUND: "not-found",
      POOL_EMPTY: "invalid-state",
    });
    assert.equal(ERROR_CODES.VM_LOCKED, "conflict");
    assert.equal(ERROR_CODES.PORT_IN_USE, "conflict");
    assert.equal(ERROR_CODES.VM_STATE, "invalid-state");
    assert.equal(ERROR_CODES.NOT_READY, "timeout");
    assert.equal(ERROR_CODES.TOOL_MISSING, "tool-missing");
    assert.equal(ERROR_CODES.CANCELLED, "cancelled");
  });

  it("maps every kind to an HTTP status", () => {
    const statuses = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, httpStatus(kind)]));
    assert.deepEqual(statuses, {
      "invalid-argument": 400,
      "not-found": 404,
      exists: 409,
      "invalid-state": 409,
      conflict: 409,
      unsupported: 501,
      "tool-missing": 503,
      timeout: 504,
      cancelled: 499,
      failed: 500,
      internal: 500,
    });
  });

  it("maps kinds to the CLI's exit codes: 2 bad input, 3 missing tool, 130 cancelled, else 1", () => {
    const codes = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, exitCode(kind)]));
    assert.deepEqual(codes, {
      "invalid-argument": 2,
      "not-found": 1,
      exists: 1,
      "invalid-state": 1,
      conflict: 1,
      unsupported: 1,
      "tool-missing": 3,
      timeout: 1,
      cancelled: 130,
      failed: 1,
      internal: 1,
    });
    assert.equal(exitCode(new CorralError("INVALID_SPEC", "x").kind), 2);
    assert.equal(exitCode(new CorralError("CLOUD_INIT", "x").kind), 2);
    assert.equal(exitCode(new CorralError("TOOL_MISSING", "x").kind), 3);
    assert.equal(exitCode(new CorralError("POOL_NOT_FOUND", "x").kind), 1);
    assert.equal(exitCode(asCorralError(new Error("boom")).kind), 1);
  });
});

describe("CorralError", () => {
  it("serialises kind, code, message, hint, field and details", () => {
    const err = new CorralError("INVALID_SPEC", "memory: must be between 64M and 256G", {
      field: "memory",
      hint: "a size such as 512M",
      details: { value: "1M" },
      cause: new Error("inner"),
    });
    assert.equal(err.field, "memory");
    assert.deepEqual(JSON.parse(JSON.stringify(err)), {
      kind: "invalid-argument",
      code: "INVALID_SPEC",
      message: "memory: must be between 64M and 256G",
      hint: "a size such as 512M",
      field: "memory",
      details: { value: "1M" },
    });
  });

  it("recognises an error from a second copy of the package by its brand", () => {
    // What another copy's CorralError looks like from here: a different class, the same
    // registered symbol.
    class OtherCorralError extends Error {
      readonly code = "VM_NOT_FOUND";
      readonly kind = "not-found";
      get [Symbol.for("corral.error")]() {
        return true;
      }
    }
    const foreign: unknown = new OtherCorralError('no VM named "x"');
    assert.ok(foreign instanceof CorralError);
    assert.ok(isCorralError(foreign));
    assert.ok(isCorralError(foreign, "VM_NOT_FOUND"));
    assert.ok(!isCorralError(foreign, "VM_EXISTS"));
    assert.equal(asCorralError(foreign), foreign, "kept as it is, not wrapped");

    assert.ok(!(new Error("plain") instanceof CorralError));
    assert.ok(!isCorralError({ code: "VM_NOT_FOUND" }));
    assert.ok(!isCorralError(null));
    assert.ok(!isCorralError({ [Symbol.for("corral.error")]: "yes" }));
    assert.ok(new CorralError("INTERNAL", "x") instanceof Error);
  });

  it("wraps anything else, keeping the cause", () => {
    const inner = new Error("boom");
    const err = asCorralError(inner, "DOWNLOAD");
    assert.equal(err.code, "DOWNLOAD");
    assert.equal(err.message, "boom");
    assert.equal(err.cause, inner);
    assert.equal(asCorralError("text").code, "INTERNAL");
  });
});

describe("cancellation", () => {
  it("turns an aborted signal into CANCELLED, not a DOMException", () => {
    const controller = new AbortController();
    throwIfCancelled(controller.signal);
    throwIfCancelled(undefined);
    controller.abort();
    assert.throws(
      () => throwIfCancelled(controller.signal),
      (err) =>
        isCorralError(err, "CANCELLED") &&
        err.kind === "cancelled" &&
        (err.cause as Error).name === "AbortError",
    );
  });

  it("keeps a CorralError given as the abort reason", () => {
    const controller = new AbortController();
    const reason = new CorralError("CANCELLED", "interrupted");
    controller.abort(reason);
    assert.equal(cancelled(controller.signal), reason);
  });

  it("reports AbortSignal.timeout() as TIMEOUT", async () => {
    const signal = AbortSignal.timeout(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(cancelled(signal).kind, "timeout");
  });

  it("converts AbortErrors caught elsewhere", async () => {
    const controller = new AbortController();
    controller.abort();
    const { setTimeout: sleep } = await import("node:timers/promises");
    const err = await sleep(1000, undefined, { signal: controller.signal }).catch((e) => e);
    assert.equal(asCorralError(err).kind, "cancelled");
    assert.equal(asCorralError(controller.signal.reason).code, "CANCELLED");
  });
});
