import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { processesMentioning, sandbox } from "./harness.js";

// One private state directory per file; cleanup() also proves no process of it survives.
const box = sandbox();
after(() => box.cleanup());

describe("corral run", () => {
  it("prints stdout and stderr to their own streams and returns the exit code", async () => {
    const r = await box.corral(["run", "--rm", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert.equal(r.stdout.toString(), "out\n");
    assert.match(r.stderr, /^err$/m);
    assert.doesNotMatch(r.stderr, /out/);
    assert.equal(r.code, 7);
  });

  it("runs in a real Linux guest with its own kernel", async () => {
    const r = await box.corral(["run", "--rm", "--", "uname", "-sr"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^Linux 6\.1\.\S+-amd64\n$/);
  });

  it("pipes stdin with -i and passes env, cwd and cpus", async () => {
    const r = await box.corral(
      [
        "run",
        "--rm",
        "-i",
        "--cpus",
        "2",
        "--env",
        "GREETING=hello there",
        "-w",
        "/tmp",
        "--",
        "sh",
        "-c",
        'cat; echo "$GREETING"; pwd; nproc',
      ],
      { input: "from stdin\n" },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "from stdin\nhello there\n/tmp\n2\n");
  });

  it("keeps a stopped VM without --rm, and removes it with rm", async () => {
    const r = await box.corral(["run", "--name", "keeper", "--", "true"]);
    assert.equal(r.code, 0, r.stderr);
    const ls = JSON.parse((await box.corral(["ls", "--json"])).stdout.toString());
    assert.deepEqual(
      ls.map((vm: { name: string; state: string }) => [vm.name, vm.state]),
      [["keeper", "stopped"]],
    );
    assert.equal((await box.corral(["rm", "keeper"])).code, 0);
    assert.deepEqual(JSON.parse((await box.corral(["ls", "--json"])).stdout.toString()), []);
  });
});

describe("exec on one running VM", () => {
  before(async () => {
    const c = await box.corral(["create", "--name", "shared", "--memory", "256M"]);
    assert.equal(c.code, 0, c.stderr);
    const s = await box.corral(["start", "shared"]);
    assert.equal(s.code, 0, s.stderr);
  });

  it("returns exit codes 0, 1, 7 and 128+signal", async () => {
    const cases: [string, number][] = [
      ["exit 0", 0],
      ["exit 1", 1],
      ["exit 7", 7],
      ["kill -9 $$", 137],
      ["kill -TERM $$", 143],
    ];
    for (const [script, code] of cases) {
      const r = await box.corral(["exec", "shared", "--", "sh", "-c", script]);
      assert.equal(r.code, code, `${script}: ${r.stderr}`);
    }
  });

  it("streams 10 MiB of stdout intact", async () => {
    const r = await box.corral([
      "exec",
      "shared",
      "--",
      "sh",
      "-c",
      "head -c 10485760 /dev/urandom > /tmp/big; sha256sum /tmp/big >&2; cat /tmp/big",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 10 * 1024 * 1024);
    const guestSum = r.stderr.trim().split(/\s+/)[0];
    assert.equal(createHash("sha256").update(r.stdout).digest("hex"), guestSum);
  });

  it("pipes binary stdin intact", async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const r = await box.corral(["exec", "-i", "shared", "--", "sha256sum"], { input: data });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout.toString().split(/\s+/)[0],
      createHash("sha256").update(data).digest("hex"),
    );
  });

  it("reports a missing program clearly", async () => {
    const r = await box.corral(["exec", "shared", "--", "no-such-program"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no-such-program/);
  });

  it("survives the CLI: the VM is still ready in a new invocation", async () => {
    const r = await box.corral(["inspect", "shared"]);
    const vm = JSON.parse(r.stdout.toString());
    assert.equal(vm.state, "ready");
    assert.ok(vm.pids.vmm > 0);
  });
});

describe("Ctrl-C during run", () => {
  it("stops the command and the VM, removes it with --rm, and exits 130", async () => {
    const child = box.spawnCorral([
      "run",
      "--rm",
      "--name",
      "interrupted",
      "--",
      "sh",
      "-c",
      "echo started; sleep 600",
    ]);
    const exited = new Promise<number | null>((resolve) =>
      child.on("close", (code) => resolve(code)),
    );
    await new Promise<void>((resolve) => {
      child.stdout?.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("started")) resolve();
      });
    });
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    const ls = JSON.parse((await box.corral(["ls", "--json"])).stdout.toString());
    assert.ok(!ls.some((vm: { name: string }) => vm.name === "interrupted"));
    assert.deepEqual(processesMentioning(`${box.stateDir}/vms/interrupted/`), []);
  });
});
