import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { acquireLock, staleClaimPath, tryLock } from "../../src/base/lock.js";
import { CorralError, isCorralError } from "../../src/errors.js";
import { FakeProcessTable } from "./fake-processes.js";

const lockPath = () => join(mkdtempSync(join(tmpdir(), "corral-lock-")), "lock");

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

describe("taking over a stale lock", () => {
  /** Two CLIs, A (pid 100) and B (pid 200), on a Mac-like host; pid 900 held the lock and died. */
  function host() {
    const table = new FakeProcessTable("darwin")
      .add(100, { startTime: "1764669000", executable: "node" })
      .add(200, { startTime: "1764669001", executable: "node" });
    const path = lockPath();
    writeFileSync(path, "900 1764660000");
    return { table, path };
  }

  it("lets one of two takers win when both saw the holder dead", () => {
    const { table, path } = host();
    // B looks up the dead holder; at that moment A runs its whole takeover. B then acts on
    // what it saw: before the fix it removed A's fresh lock and created its own.
    const a: { ran?: boolean; release?: () => void } = {};
    table.onInfo = (pid) => {
      if (pid !== 900 || a.ran === true) return;
      a.ran = true;
      a.release = tryLock(path, "vm", { table, pid: 100 });
    };
    const releaseB = tryLock(path, "vm", { table, pid: 200 });
    const releaseA = a.release;
    assert.ok(releaseA !== undefined, "A took over the stale lock");
    assert.equal(releaseB, undefined, "B must not win too");
    assert.equal(readFileSync(path, "utf8"), "100 1764669000");
    assert.deepEqual(readdirSync(join(path, "..")), ["lock"], "no claim or temp file left");
    releaseA();
    assert.equal(existsSync(path), false);
  });

  it("backs off while a live taker holds the claim", () => {
    const { table, path } = host();
    writeFileSync(staleClaimPath(path, "900 1764660000"), "100 1764669000");
    assert.equal(tryLock(path, "vm", { table, pid: 200 }), undefined);
    assert.equal(readFileSync(path, "utf8"), "900 1764660000", "left to the claimer");
  });

  it("clears the claim of a taker that died mid-takeover", () => {
    const { table, path } = host();
    const claim = staleClaimPath(path, "900 1764660000");
    writeFileSync(claim, "901 1764660500");
    const release = tryLock(path, "vm", { table, pid: 200 });
    assert.ok(release !== undefined);
    assert.equal(readFileSync(path, "utf8"), "200 1764669001");
    assert.equal(existsSync(claim), false);
    release();
  });

  it("keeps a live holder's lock on macOS, and takes over a reused pid's", () => {
    const { table, path } = host();
    writeFileSync(path, "100 1764669000");
    assert.equal(tryLock(path, "vm", { table, pid: 200 }), undefined, "A is alive");
    writeFileSync(path, "100 1764600000"); // pid 100 is another process now
    const release = tryLock(path, "vm", { table, pid: 200 });
    assert.ok(release !== undefined);
    release();
  });

  it("fails when liveness is unknown instead of taking the lock", () => {
    const { table, path } = host();
    table.onInfo = () => {
      throw new CorralError("UNSUPPORTED", "no process table here");
    };
    assert.throws(
      () => tryLock(path, "vm", { table, pid: 200 }),
      (e) => isCorralError(e, "UNSUPPORTED"),
    );
    assert.equal(readFileSync(path, "utf8"), "900 1764660000");
  });

  it("a removed VM directory is VM_NOT_FOUND", () => {
    const { table } = host();
    assert.throws(
      () => tryLock(join(tmpdir(), "corral-no-such-dir", "lock"), "vm x", { table, pid: 200 }),
      (e) => isCorralError(e, "VM_NOT_FOUND"),
    );
  });
});
