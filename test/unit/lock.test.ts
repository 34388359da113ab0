import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { acquireLock, tryLock } from "../../src/base/lock.js";
import { isCorralError } from "../../src/errors.js";

describe("acquireLock", () => {
  it("excludes a second holder until released", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "corral-lock-")), "lock");
    const release = await acquireLock(path, "vm");
    await assert.rejects(acquireLock(path, "vm", 100), (e) => isCorralError(e, "VM_LOCKED"));
    release();
    assert.equal(existsSync(path), false);
    (await acquireLock(path, "vm", 100))();
  });
  it("takes over a lock whose holder died", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "corral-lock-")), "lock");
    const child = spawn("true");
    const pid = await new Promise<number>((resolve) => child.on("exit", () => resolve(child.pid!)));
    writeFileSync(path, `${pid} 12345`);
    const release = await acquireLock(path, "vm", 100);
    release();
  });
  it("tryLock never waits: it fails while held and succeeds once released", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "corral-lock-")), "lock");
    const release = await acquireLock(path, "vm");
    assert.equal(tryLock(path), undefined);
    release();
    const second = tryLock(path);
    assert.ok(second !== undefined);
    second();
  });
});
