/**
 * The vmm shim with `sh`/`sleep` standing in for QEMU and the vsock sidecar.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isCorralError } from "../../src/errors.js";
import { buildVmmShim, vmmShimSource } from "../../src/host/vmm-shim-binary.js";

interface ShimState {
  shimPid: number;
  vmmPid: number;
  sidecarPid: number | null;
  sidecarStartTime: string | null;
  vmmStartTime: string;
}

/** Field 22 of /proc/<pid>/stat: what the shim records to tell a process from a reused pid. */
function startTimeOf(pid: number): string | undefined {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}
interface ExitStatus {
  exitCode: number | null;
  signal: number | null;
}
interface ShimExit {
  vmm: ExitStatus | null;
  sidecar: ExitStatus | null;
  reason: string;
  stopRequested: boolean;
  atMs: number;
}

let dir: string;
let shim: string;
let counter = 0;
const started: number[] = [];

/** Alive and not a zombie: orphans may be reparented to a pid 1 that never reaps. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

async function assertGone(...pids: (number | null)[]): Promise<void> {
  await sleep(100);
  for (const pid of pids) {
    if (pid !== null) assert.equal(isAlive(pid), false, `process ${pid} is still running`);
  }
}

async function waitFor(path: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear`);
    await sleep(5);
  }
}

function runShim(args: string[], extraFd?: number) {
  const d = join(dir, `t${counter++}`);
  execFileSync("mkdir", ["-p", d]);
  const paths = {
    dir: d,
    state: join(d, "state.json"),
    exit: join(d, "exit.json"),
    ready: join(d, "ready"),
    wait: join(d, "sidecar.sock"),
    log: join(d, "shim.log"),
  };
  const fill = (a: string) =>
    a.replaceAll("@READY", paths.ready).replaceAll("@WAIT", paths.wait).replaceAll("@DIR", d);
  const log = openSync(paths.log, "a");
  // Spawned the way the host does: own session, stdio to a log file, not waited on by a TTY.
  const child = spawn(
    shim,
    ["--state-file", paths.state, "--exit-file", paths.exit, ...args.map(fill)],
    {
      detached: true,
      stdio: extraFd === undefined ? ["ignore", log, log] : ["ignore", log, log, extraFd],
    },
  );
  closeSync(log);
  if (child.pid !== undefined) started.push(child.pid);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const state = async (): Promise<ShimState> => {
    await waitFor(paths.state);
    const s = JSON.parse(readFileSync(paths.state, "utf8")) as ShimState;
    started.push(s.vmmPid);
    if (s.sidecarPid !== null) started.push(s.sidecarPid);
    return s;
  };
  const result = () => JSON.parse(readFileSync(paths.exit, "utf8")) as ShimExit;
  return { child, exited, state, result, paths };
}

const SIDECAR = [
  "--sidecar-wait-path",
  "@WAIT",
  "--sidecar",
  "sh",
  "-c",
  'touch "$1"; exec sleep 30',
  "sh",
  "@WAIT",
];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "corral-shim-"));
  process.env.CORRAL_CACHE_DIR = join(dir, "cache");
});

after(() => {
  for (const pid of started) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("buildVmmShim", () => {
  test("a missing compiler is TOOL_MISSING with an install hint", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir, "empty-bin");
    try {
      await assert.rejects(buildVmmShim(), (err: unknown) => {
        assert.ok(isCorralError(err, "TOOL_MISSING"));
        assert.equal(err.hint, "apt-get install gcc");
        return true;
      });
    } finally {
      process.env.PATH = path;
    }
  });

  test("compiles into the cache once and reuses the binary", async () => {
    shim = await buildVmmShim();
    assert.ok(shim.startsWith(join(dir, "cache", "build", "vmm-shim-")));
    const mtime = statSync(shim).mtimeMs;
    assert.deepEqual(await Promise.all([buildVmmShim(), buildVmmShim()]), [shim, shim]);
    assert.equal(statSync(shim).mtimeMs, mtime);
  });

  test("the source compiles cleanly with -Werror", () => {
    execFileSync("gcc", [
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-o",
      join(dir, "werror-shim"),
      vmmShimSource,
    ]);
  });
});

describe("vmm-shim", () => {
  test("records a normal exit code and a valid state file", async () => {
    const s = runShim(["--vmm", "sh", "-c", "sleep 0.5; exit 7"]);
    const state = await s.state();
    assert.equal(state.shimPid, s.child.pid);
    assert.equal(state.sidecarPid, null);
    assert.equal(state.sidecarStartTime, null);
    assert.match(state.vmmStartTime, /^\d+$/);
    const stat = readFileSync(`/proc/${state.vmmPid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    assert.equal(fields[19], state.vmmStartTime, "field 22 of /proc/<pid>/stat");
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.deepEqual(r.vmm, { exitCode: 7, signal: null });
    assert.equal(r.reason, "vmm exited with code 7");
    assert.equal(r.stopRequested, false);
    assert.ok(Math.abs(r.atMs - Date.now()) < 60_000);
    await assertGone(state.vmmPid, state.shimPid);
  });

  test("SIGUSR1 replaces the sidecar and leaves the VMM running", async () => {
    const s = runShim([...SIDECAR, "--vmm", "sleep", "30"]);
    const before = await s.state();
    // The sidecar is known by its start time too (reconcile signals it only if it matches).
    assert.equal(before.sidecarStartTime, startTimeOf(before.sidecarPid!));
    process.kill(before.shimPid, "SIGUSR1");
    let after = before;
    const deadline = Date.now() + 5_000;
    while (after.sidecarPid === before.sidecarPid) {
      if (Date.now() > deadline) throw new Error("the sidecar was not replaced");
      await sleep(20);
      after = JSON.parse(readFileSync(s.paths.state, "utf8")) as ShimState;
    }
    started.push(after.sidecarPid!);
    await assertGone(before.sidecarPid);
    assert.ok(isAlive(after.sidecarPid!), "the new sidecar runs");
    assert.equal(after.vmmPid, before.vmmPid);
    assert.ok(isAlive(before.vmmPid), "the VMM was not touched");
    assert.ok(existsSync(s.paths.wait), "the new sidecar's socket exists");
    process.kill(before.vmmPid, "SIGKILL");
    await s.exited;
    await assertGone(after.sidecarPid, before.shimPid);
  });

  test("an --aux helper that dies kills the VMM; its --aux read-only dir is read-only to it only", async () => {
    const ro = join(dir, `ro-${counter}`);
    execFileSync("mkdir", ["-p", ro]);
    const s = runShim([
      "--aux",
      "@WAIT",
      ro,
      "sh",
      "-c",
      // Writing into the read-only bind fails; the outcome is recorded outside it.
      'if echo x > "$2/f" 2>/dev/null; then touch "$1.rw"; else touch "$1.ro"; fi; touch "$1"; exec sleep 30',
      "sh",
      "@WAIT",
      ro,
      "--aux-end",
      "--vmm",
      "sleep",
      "30",
    ]);
    const state = await s.state();
    assert.ok(existsSync(`${s.paths.wait}.ro`), "the helper could not write its read-only dir");
    assert.ok(!existsSync(join(ro, "f")));
    execFileSync("sh", ["-c", `echo host > "${ro}/host-can"`]);
    const helper = execFileSync("pgrep", [
      "-P",
      String(state.shimPid),
      "-f",
      "exec sleep 30|^sleep 30$",
    ])
      .toString()
      .trim()
      .split("\n")
      .map(Number)
      .filter((pid) => pid !== state.vmmPid);
    assert.equal(helper.length, 1);
    process.kill(helper[0]!, "SIGKILL");
    await s.exited;
    const r = s.result();
    assert.match(r.reason, /sh killed by signal 9/);
    assert.deepEqual(r.vmm, { exitCode: null, signal: 9 });
    await assertGone(state.vmmPid, state.shimPid);
  });

  test("--vmm-fd hands the descriptor to the VMM only", async () => {
    const file = join(dir, "memory.bin");
    execFileSync("sh", ["-c", `printf saved-state > "${file}"`]);
    const fd = openSync(file, "r");
    const s = runShim(
      [
        "--vmm-fd",
        "3",
        "--sidecar-wait-path",
        "@WAIT",
        "--sidecar",
        "sh",
        "-c",
        'if [ -e /proc/self/fd/3 ]; then echo open; else echo closed; fi > "$2"; touch "$1"; exec sleep 30',
        "sh",
        "@WAIT",
        "@DIR/sidecar-fd",
        "--vmm",
        "sh",
        "-c",
        'cat <&3 > "$1"; exec sleep 30',
        "sh",
        "@DIR/vmm-read",
      ],
      fd,
    );
    closeSync(fd);
    const state = await s.state();
    await waitFor(join(s.paths.dir, "vmm-read"));
    await sleep(100);
    assert.equal(readFileSync(join(s.paths.dir, "vmm-read"), "utf8"), "saved-state");
    assert.equal(readFileSync(join(s.paths.dir, "sidecar-fd"), "utf8"), "closed\n");
    assert.equal(existsSync(`/proc/${state.shimPid}/fd/3`), false, "the shim closed its copy");
    process.kill(state.shimPid, "SIGTERM");
    await s.exited;
  });

  test("--vmm-fd must name an open descriptor", async () => {
    const s = runShim(["--vmm-fd", "9", "--vmm", "true"]);
    assert.equal((await s.exited).code, 2);
    assert.match(readFileSync(s.paths.log, "utf8"), /--vmm-fd is not an open descriptor/);
  });

  test("a VMM killed by signal 9 is recorded and the sidecar is stopped", async () => {
    const s = runShim([...SIDECAR, "--vmm", "sleep", "30"]);
    const state = await s.state();
    assert.equal(typeof state.sidecarPid, "number");
    assert.ok(isAlive(state.vmmPid) && isAlive(state.sidecarPid!));
    process.kill(state.vmmPid, "SIGKILL");
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.deepEqual(r.vmm, { exitCode: null, signal: 9 });
    assert.equal(r.reason, "vmm killed by signal 9");
    assert.deepEqual(r.sidecar, { exitCode: null, signal: 15 });
    await assertGone(state.vmmPid, state.sidecarPid, state.shimPid);
  });

  test("a sidecar that dies takes the VMM down and is named in the reason", async () => {
    const s = runShim([
      "--sidecar-wait-path",
      "@WAIT",
      "--sidecar",
      "sh",
      "-c",
      'touch "$1"; sleep 0.3; exit 5',
      "sh",
      "@WAIT",
      "--vmm",
      "sleep",
      "30",
    ]);
    const state = await s.state();
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.equal(r.reason, "vsock sidecar exited with code 5");
    assert.deepEqual(r.vmm, { exitCode: null, signal: 9 });
    await assertGone(state.vmmPid, state.sidecarPid);
  });

  test("a sidecar that exits before its socket appears stops the start", async () => {
    const s = runShim([
      "--sidecar-wait-path",
      "@WAIT",
      "--sidecar-log",
      "@DIR/sidecar.log",
      "--sidecar",
      "sh",
      "-c",
      "echo sidecar-said-this; exit 4",
      "--vmm",
      "sleep",
      "30",
    ]);
    assert.deepEqual(await s.exited, { code: 1, signal: null });
    const r = s.result();
    assert.equal(r.reason, "vsock sidecar exited with code 4");
    assert.equal(r.vmm, null);
    assert.equal(existsSync(s.paths.state), false);
    assert.match(readFileSync(join(s.paths.dir, "sidecar.log"), "utf8"), /sidecar-said-this/);
  });

  test("a VMM binary that cannot run is reported as such", async () => {
    const s = runShim(["--vmm", join(dir, "no-such-qemu")]);
    assert.deepEqual(await s.exited, { code: 1, signal: null });
    assert.match(s.result().reason, /vmm failed to start: cannot run .*no-such-qemu: No such file/);
    assert.match(readFileSync(s.paths.log, "utf8"), /^vmm-shim: vmm failed to start/m);
  });

  test("the ready watchdog kills a guest that never became ready", async () => {
    const s = runShim([
      "--ready-file",
      "@READY",
      "--ready-timeout-ms",
      "300",
      "--vmm",
      "sleep",
      "30",
    ]);
    const state = await s.state();
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.equal(r.reason, "guest not ready within 300 ms");
    assert.deepEqual(r.vmm, { exitCode: null, signal: 9 });
    await assertGone(state.vmmPid);
  });

  test("a ready file in time disarms the watchdog", async () => {
    const s = runShim([
      "--ready-file",
      "@READY",
      "--ready-timeout-ms",
      "1000",
      "--vmm",
      "sh",
      "-c",
      'touch "$1"; sleep 1.3; exit 0',
      "sh",
      "@READY",
    ]);
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.equal(r.reason, "vmm exited with code 0");
    assert.deepEqual(r.vmm, { exitCode: 0, signal: null });
  });

  test("SIGTERM is forwarded to the VMM and SIGHUP is ignored", async () => {
    const s = runShim([...SIDECAR, "--vmm", "sleep", "30"]);
    const state = await s.state();
    process.kill(state.shimPid, "SIGHUP");
    await sleep(50);
    assert.ok(isAlive(state.shimPid) && isAlive(state.vmmPid));
    process.kill(state.shimPid, "SIGTERM");
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    const r = s.result();
    assert.deepEqual(r.vmm, { exitCode: null, signal: 15 });
    assert.equal(r.stopRequested, true);
    await assertGone(state.vmmPid, state.sidecarPid);
  });

  test("children die with a SIGKILLed shim (PDEATHSIG)", async () => {
    const s = runShim([...SIDECAR, "--vmm", "sleep", "30"]);
    const state = await s.state();
    process.kill(state.shimPid, "SIGKILL");
    assert.deepEqual(await s.exited, { code: null, signal: "SIGKILL" });
    await assertGone(state.vmmPid, state.sidecarPid);
    assert.equal(existsSync(s.paths.exit), false);
  });

  test("bad usage exits 2 with a vmm-shim: message", async () => {
    const s = runShim(["--ready-file", "@READY", "--vmm", "true"]);
    assert.deepEqual(await s.exited, { code: 2, signal: null });
    assert.match(readFileSync(s.paths.log, "utf8"), /^vmm-shim: .*go together/m);
  });
});
