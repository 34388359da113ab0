/** Port forwards (over vsock, no NIC) and shared folders (virtio-9p), with real VMs. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { sandbox } from "./harness.js";

const box = sandbox();
const shareDir = mkdtempSync(join(tmpdir(), "corral-share-"));
after(async () => {
  await box.cleanup();
  rmSync(shareDir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function httpGet(port: number, path: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    signal: AbortSignal.timeout(20_000),
  });
  return `${response.status} ${await response.text()}`;
}

describe("port forwards and shared folders", () => {
  it("forwards a host port to busybox httpd in a VM without a NIC, after the CLI exited", async () => {
    const port = await freePort();
    writeFileSync(join(shareDir, "from-host.txt"), "written on the host\n");
    const create = await box.corral([
      "create",
      "--name",
      "web",
      "-p",
      `${port}:8000`,
      "-v",
      `${shareDir}:/srv/share`,
      "-v",
      `${shareDir}:/srv/readonly:ro`,
      "-v",
      `${shareDir}:/srv/vfs:virtiofs`,
      "-v",
      `${shareDir}:/srv/vfs-ro:ro,virtiofs`,
    ]);
    assert.equal(create.code, 0, create.stderr);
    const start = await box.corral(["start", "web"]);
    assert.equal(start.code, 0, start.stderr);
    // Every CLI process has exited by now: the forward lives in the daemon.
    const serve = await box.corral([
      "exec",
      "web",
      "--",
      "sh",
      "-c",
      "ls /sys/class/net; mkdir -p /www && echo 'served from the guest' > /www/index.html && httpd -h /www -p 8000",
    ]);
    assert.equal(serve.code, 0, serve.stderr);
    assert.equal(serve.stdout.toString(), "lo\n");
    assert.equal(await httpGet(port, "/index.html"), "200 served from the guest\n");
    // Several connections at once, each its own vsock stream.
    const bodies = await Promise.all([1, 2, 3, 4].map(() => httpGet(port, "/index.html")));
    assert.deepEqual(new Set(bodies), new Set(["200 served from the guest\n"]));
    const ports = await box.corral(["daemon", "status", "--json"]);
    const status = JSON.parse(ports.stdout.toString()) as {
      vms: { name: string; forwards: { hostPort: number; connections: { total: number } }[] }[];
    };
    const web = status.vms.find((vm) => vm.name === "web");
    assert.equal(web?.forwards[0]?.hostPort, port);
    assert.ok((web?.forwards[0]?.connections.total ?? 0) >= 5);
  });

  it("shares folders both ways, and :ro is enforced by the host even after a remount", async () => {
    const r = await box.corral([
      "exec",
      "web",
      "--",
      "sh",
      "-c",
      [
        "cat /srv/share/from-host.txt",
        "echo 'written in the guest' > /srv/share/from-guest.txt",
        "cat /srv/readonly/from-host.txt",
        "echo nope > /srv/readonly/denied.txt && echo WROTE",
        "mount -o remount,rw /srv/readonly; echo nope > /srv/readonly/denied.txt && echo WROTE",
        "true",
      ].join("; "),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "written on the host\nwritten on the host\n");
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(readFileSync(join(shareDir, "from-guest.txt"), "utf8"), "written in the guest\n");
    assert.throws(() => readFileSync(join(shareDir, "denied.txt")));
  });

  it("shares over virtiofs too, and :ro is enforced on the host by a read-only bind mount", async () => {
    const r = await box.corral([
      "exec",
      "web",
      "--",
      "sh",
      "-c",
      [
        "mount | grep -c virtiofs",
        "cat /srv/vfs/from-host.txt",
        "echo 'via virtiofs' > /srv/vfs/from-virtiofs.txt",
        "mount -o remount,rw /srv/vfs-ro; echo nope > /srv/vfs-ro/denied-vfs.txt && echo WROTE",
        "true",
      ].join("; "),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), "2\nwritten on the host\n");
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(readFileSync(join(shareDir, "from-virtiofs.txt"), "utf8"), "via virtiofs\n");
    assert.throws(() => readFileSync(join(shareDir, "denied-vfs.txt")));
  });

  it("a busy host port is refused at create time, naming the port", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const r = await box.corral(["create", "--name", "busy", "-p", `${port}:80`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`host port 127\\.0\\.0\\.1:${port} is already in use`));
      const ls = await box.corral(["ls", "--json"]);
      assert.ok(!ls.stdout.toString().includes('"busy"'), "a failed create leaves no VM");
    } finally {
      blocker.close();
    }
  });

  it("rejects bad -p and -v values and missing host directories, naming the flag", async () => {
    for (const [args, pattern] of [
      [["-p", "80"], /-p 80: expected \[HOST_IP:\]HOST_PORT:GUEST_PORT/],
      [["-p", "99999:80"], /host port "99999" is not 1-65535/],
      [["-v", "/nonexistent-dir:/data"], /host directory \/nonexistent-dir does not exist/],
      [["-v", `${shareDir}:/proc/x`], /would shadow the guest's \/proc/],
      [["-v", `${shareDir}:relative`], /must be an absolute path/],
    ] as const) {
      const r = await box.corral(["create", "--name", "bad", ...args]);
      assert.notEqual(r.code, 0, args.join(" "));
      assert.match(r.stderr, pattern, args.join(" "));
    }
  });

  it("stopping the VM tears its forward down", async () => {
    const status = JSON.parse(
      (await box.corral(["daemon", "status", "--json"])).stdout.toString(),
    ) as { vms: { name: string; forwards: { hostPort: number }[] }[] };
    const port = status.vms.find((vm) => vm.name === "web")?.forwards[0]?.hostPort;
    assert.ok(port !== undefined);
    const stop = await box.corral(["stop", "web"]);
    assert.equal(stop.code, 0, stop.stderr);
    await assert.rejects(httpGet(port, "/"), /fetch failed/);
  });
});
