import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { isCorralError } from "../../src/errors.js";
import { buildSeed, writeSeed } from "../../src/images/cloud-init/seed.js";
import {
  instanceIdFor,
  renderMetaData,
  renderNetworkConfig,
  renderUserData,
} from "../../src/images/cloud-init/user-data.js";
import {
  AGENT_BINARY_PATH,
  AGENT_UNIT_PATH,
  type CloudInitSpecInput,
  parseCloudInit,
} from "../../src/spec/cloud-init.js";

const dir = mkdtempSync(join(tmpdir(), "corral-seed-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const ED25519 =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3Yk8Y5lW2dM3n0YbIu1sqHNxKAJ/AsTnhq4bHcvzX dev@host";
const RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me@laptop";
// Bytes that are not text: NUL, invalid UTF-8, a YAML document marker.
const agentBinary = Buffer.concat([
  Buffer.from("\x7fELF\x02\x01\x01\0"),
  Buffer.from([0xff, 0xfe, 0x00, 0x80]),
  Buffer.from("\n---\n... #cloud-config\n"),
  randomBytes(64 * 1024),
]);

const fullSpec: CloudInitSpecInput = {
  users: [
    {
      name: "dev",
      groups: ["sudo", "adm"],
      sudo: true,
      shell: "/bin/bash",
      sshAuthorizedKeys: [ED25519],
    },
    { name: "svc", lockPassword: false },
  ],
  sshAuthorizedKeys: [RSA],
  packages: ["curl", "libssl3", "g++"],
  writeFiles: [
    { path: "/etc/motd", content: "hello\non: yes\n", permissions: "0644" },
    { path: "/opt/blob", content: "AAEC/w==", encoding: "base64", owner: "dev:dev", append: true },
  ],
  runcmd: ["echo hi > /tmp/x", ["touch", "/tmp/y z"]],
  bootcmd: [["echo", "boot"]],
  hostname: "box.example.com",
  timezone: "Europe/Paris",
};
const spec = parseCloudInit(fullSpec);

type Doc = Record<string, unknown> & {
  write_files: { path: string; content: string; encoding?: string }[];
  runcmd: unknown[];
};

function userDataDoc(text: string): Doc {
  assert.ok(text.startsWith("#cloud-config\n"));
  // cloud-init reads YAML 1.1 (PyYAML): check both readings agree.
  const doc = parse(text, { version: "1.1" }) as Doc;
  assert.deepEqual(parse(text), doc);
  return doc;
}

function refusesAt(input: unknown, field: string) {
  assert.throws(
    () => parseCloudInit(input),
    (e) => {
      assert.ok(isCorralError(e, "INVALID_SPEC"));
      assert.equal(e.message.split(": ")[0], field, e.message);
      return true;
    },
  );
}

describe("cloudInit schema", () => {
  it("fills defaults", () => {
    const s = parseCloudInit({ users: [{ name: "a" }] });
    assert.equal(s.users[0]?.lockPassword, true);
    assert.deepEqual(
      [s.packages, s.writeFiles, s.runcmd, s.bootcmd, s.sshAuthorizedKeys],
      [[], [], [], [], []],
    );
    assert.equal(
      parseCloudInit({ writeFiles: [{ path: "/a", content: "" }] }).writeFiles[0]?.encoding,
      "text",
    );
  });

  it("names the offending field", () => {
    refusesAt(
      { users: [{ name: "ok", sshAuthorizedKeys: [ED25519, "ssh-foo AAAA"] }] },
      "cloudInit.users[0].sshAuthorizedKeys[1]",
    );
    refusesAt(
      { users: [{ name: "ok", sshAuthorizedKeys: [`${ED25519}\n${RSA}`] }] },
      "cloudInit.users[0].sshAuthorizedKeys[0]",
    );
    refusesAt({ users: [{ name: "ok" }, { name: "Root!" }] }, "cloudInit.users[1].name");
    refusesAt(
      { users: [{ name: "ok", groups: ["wheel", "Bad Group"] }] },
      "cloudInit.users[0].groups[1]",
    );
    refusesAt({ users: [{ name: "ok", shell: "bash" }] }, "cloudInit.users[0].shell");
    refusesAt({ users: [{ name: "ok", passwd: "x" }] }, "cloudInit.users[0].passwd");
    refusesAt({ sshAuthorizedKeys: ["not a key"] }, "cloudInit.sshAuthorizedKeys[0]");
    refusesAt({ packages: ["curl", "Bad_Pkg"] }, "cloudInit.packages[1]");
    refusesAt({ writeFiles: [{ path: "etc/x", content: "" }] }, "cloudInit.writeFiles[0].path");
    refusesAt({ writeFiles: [{ path: "/x\0y", content: "" }] }, "cloudInit.writeFiles[0].path");
    refusesAt(
      { writeFiles: [{ path: "/x", content: "", permissions: "rw-r--r--" }] },
      "cloudInit.writeFiles[0].permissions",
    );
    refusesAt(
      { writeFiles: [{ path: "/x", content: "", owner: "root" }] },
      "cloudInit.writeFiles[0].owner",
    );
    refusesAt(
      { writeFiles: [{ path: "/x", content: "not base64!", encoding: "base64" }] },
      "cloudInit.writeFiles[0].content",
    );
    refusesAt(
      { writeFiles: [{ path: "/x", content: "", encoding: "gzip" }] },
      "cloudInit.writeFiles[0].encoding",
    );
    refusesAt(
      { writeFiles: [{ path: AGENT_BINARY_PATH, content: "" }] },
      "cloudInit.writeFiles[0].path",
    );
    refusesAt({ runcmd: ["ok", 42] }, "cloudInit.runcmd[1]");
    refusesAt({ runcmd: [[]] }, "cloudInit.runcmd[0]");
    refusesAt({ bootcmd: [["echo", 1]] }, "cloudInit.bootcmd[0]");
    refusesAt({ hostname: "bad_host" }, "cloudInit.hostname");
    refusesAt({ timezone: "Europe/../etc" }, "cloudInit.timezone");
    refusesAt({ bogus: true }, "cloudInit.bogus");
    refusesAt({ raw: { runcmd: "reboot" } }, "cloudInit.raw.runcmd");
    refusesAt(
      { raw: { write_files: [{ path: AGENT_UNIT_PATH }] } },
      "cloudInit.raw.write_files[0].path",
    );
  });

  it("accepts every key type of the pattern", () => {
    const keys = [
      ED25519,
      RSA,
      "ssh-dss AAAAB3NzaC1kc3M=",
      "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
      "sk-ssh-ed25519@openssh.com AAAAGnNr no comment",
    ];
    assert.equal(parseCloudInit({ sshAuthorizedKeys: keys }).sshAuthorizedKeys.length, 5);
  });
});

describe("renderUserData", () => {
  const text = renderUserData(spec, { binary: agentBinary });
  const doc = userDataDoc(text);

  it("maps the spec to cloud-init keys", () => {
    assert.equal(doc.preserve_hostname, false);
    assert.equal(doc.hostname, "box");
    assert.equal(doc.fqdn, "box.example.com");
    assert.equal(doc.timezone, "Europe/Paris");
    assert.deepEqual(doc.users, [
      "default",
      {
        name: "dev",
        groups: ["sudo", "adm"],
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        shell: "/bin/bash",
        lock_passwd: true,
        ssh_authorized_keys: [ED25519],
      },
      { name: "svc", lock_passwd: false },
    ]);
    assert.deepEqual(doc.ssh_authorized_keys, [RSA]);
    assert.equal(doc.package_update, true);
    assert.deepEqual(doc.packages, ["curl", "libssl3", "g++"]);
    assert.deepEqual(doc.write_files.slice(2), [
      { path: "/etc/motd", content: "hello\non: yes\n", permissions: "0644" },
      {
        path: "/opt/blob",
        encoding: "b64",
        content: "AAEC/w==",
        owner: "dev:dev",
        append: true,
        defer: true,
      },
    ]);
    assert.deepEqual(doc.bootcmd, [["echo", "boot"]]);
    assert.deepEqual(doc.runcmd.slice(2), ["echo hi > /tmp/x", ["touch", "/tmp/y z"]]);
  });

  it("always carries the agent step, the binary as base64 only", () => {
    const [binary, unit] = doc.write_files;
    assert.deepEqual(
      { ...binary, content: undefined },
      {
        path: AGENT_BINARY_PATH,
        encoding: "b64",
        content: undefined,
        owner: "root:root",
        permissions: "0755",
      },
    );
    assert.equal(Buffer.from(binary!.content, "base64").equals(agentBinary), true);
    assert.match(binary!.content, /^[A-Za-z0-9+/]+=*$/);
    assert.equal(unit?.path, AGENT_UNIT_PATH);
    assert.equal(unit?.encoding, undefined);
    for (const line of [
      "Type=simple",
      "ExecStartPre=-/sbin/modprobe vmw_vsock_virtio_transport",
      `ExecStart=${AGENT_BINARY_PATH} --egress-port 3128`,
      "Restart=always",
      "RestartSec=1",
      "WantedBy=multi-user.target",
      "After=systemd-modules-load.service",
    ]) {
      assert.ok(unit!.content.split("\n").includes(line), line);
    }
    assert.deepEqual(doc.runcmd.slice(0, 2), [
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", "corral-agent.service"],
    ]);
    // The document is plain text: no raw binary bytes, no anchors or aliases.
    assert.doesNotMatch(text, /[\0\ufffd]/);
    assert.doesNotMatch(text, /[&*]id\d/);
  });

  it("is the same for a minimal spec, and passes the agent port", () => {
    const min = userDataDoc(
      renderUserData(parseCloudInit({}), { binary: agentBinary, port: 5000 }),
    );
    assert.deepEqual(Object.keys(min).sort(), ["runcmd", "write_files"]);
    assert.equal(min.write_files.length, 2);
    assert.ok(
      min.write_files[1]!.content.includes(
        `ExecStart=${AGENT_BINARY_PATH} --port 5000 --egress-port 3128\n`,
      ),
    );
    assert.equal(min.runcmd.length, 2);
  });

  it("defers files owned by users cloud-init creates later", () => {
    const s = parseCloudInit({
      writeFiles: [
        { path: "/a", content: "", owner: "dev:dev" },
        { path: "/b", content: "", owner: "root:root" },
        { path: "/c", content: "" },
        { path: "/d", content: "", owner: "dev:dev", defer: false },
        { path: "/e", content: "", defer: true },
      ],
    });
    const d = userDataDoc(renderUserData(s, { binary: agentBinary }));
    assert.deepEqual(
      d.write_files.slice(2).map((f) => (f as { defer?: boolean }).defer),
      [true, undefined, undefined, undefined, true],
    );
  });

  it("keeps the default user only when it gets keys", () => {
    const d = userDataDoc(
      renderUserData(parseCloudInit({ users: [{ name: "a" }] }), { binary: agentBinary }),
    );
    assert.deepEqual(d.users, [{ name: "a", lock_passwd: true }]);
    const k = userDataDoc(
      renderUserData(parseCloudInit({ sshAuthorizedKeys: [RSA] }), { binary: agentBinary }),
    );
    assert.equal(k.users, undefined);
    assert.deepEqual(k.ssh_authorized_keys, [RSA]);
  });

  it("merges raw last, keeping the agent step", () => {
    const s = parseCloudInit({
      packages: ["curl"],
      runcmd: ["echo mine"],
      writeFiles: [{ path: "/mine", content: "x" }],
      raw: {
        packages: ["vim"],
        runcmd: [["echo", "raw"]],
        write_files: [{ path: "/raw", content: "y" }],
        ntp: { enabled: true },
      },
    });
    const d = userDataDoc(renderUserData(s, { binary: agentBinary }));
    assert.deepEqual(d.packages, ["vim"]);
    assert.deepEqual(d.ntp, { enabled: true });
    assert.deepEqual(
      d.write_files.map((f) => f.path),
      [AGENT_BINARY_PATH, AGENT_UNIT_PATH, "/raw"],
    );
    assert.deepEqual(d.runcmd, [
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", "corral-agent.service"],
      ["echo", "raw"],
    ]);
  });

  it("refuses an empty agent binary or a bad port", () => {
    assert.throws(
      () => renderUserData(spec, { binary: Buffer.alloc(0) }),
      (e) => isCorralError(e, "CLOUD_INIT"),
    );
    assert.throws(
      () => renderUserData(spec, { binary: agentBinary, port: 0 }),
      (e) => isCorralError(e, "CLOUD_INIT") && /^agent\.port/.test(e.message),
    );
  });

  it("is valid for cloud-init's own schema (cloud-init schema)", () => {
    for (const [name, s] of [
      ["full", spec],
      ["minimal", parseCloudInit({})],
    ] as const) {
      const file = join(dir, `user-data-${name}`);
      writeFileSync(file, renderUserData(s, { binary: agentBinary.subarray(0, 4096), port: 1024 }));
      const r = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" });
      assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /Valid cloud-config/);
      assert.doesNotMatch(r.stdout + r.stderr, /deprecat/i);
    }
  });
});

describe("meta-data, network-config, instance-id", () => {
  const mac = "02:00:00:12:34:56";

  it("renders meta-data", () => {
    assert.deepEqual(
      parse(renderMetaData({ instanceId: "corral-x-1", hostname: "box" }), { version: "1.1" }),
      {
        "instance-id": "corral-x-1",
        "local-hostname": "box",
      },
    );
  });

  it("renders network-config v2 for DHCP and static addresses", () => {
    assert.deepEqual(
      parse(renderNetworkConfig({ mac: "02:00:00:AB:CD:EF", dhcp: true }), { version: "1.1" }),
      {
        version: 2,
        ethernets: {
          eth0: { match: { macaddress: "02:00:00:ab:cd:ef" }, "set-name": "eth0", dhcp4: true },
        },
      },
    );
    const text = renderNetworkConfig({
      mac,
      address: "10.0.0.5/24",
      gateway: "10.0.0.1",
      nameservers: ["1.1.1.1", "9.9.9.9"],
    });
    // Unquoted, PyYAML would read 12:34:56 as a base-60 integer.
    assert.deepEqual(parse(text, { version: "1.1" }), {
      version: 2,
      ethernets: {
        eth0: {
          match: { macaddress: mac },
          "set-name": "eth0",
          addresses: ["10.0.0.5/24"],
          routes: [{ to: "0.0.0.0/0", via: "10.0.0.1" }],
          nameservers: { addresses: ["1.1.1.1", "9.9.9.9"] },
        },
      },
    });
  });

  it("refuses bad network input, naming the field", () => {
    const bad = (net: Parameters<typeof renderNetworkConfig>[0], field: string) =>
      assert.throws(
        () => renderNetworkConfig(net),
        (e) => isCorralError(e, "CLOUD_INIT") && e.message.startsWith(`${field}:`),
      );
    bad({ mac: "02:00:00:12:34", dhcp: true }, "network.mac");
    bad({ mac, address: "10.0.0.5" }, "network.address");
    bad({ mac, address: "10.0.0.5/33" }, "network.address");
    bad({ mac, address: "10.0.0.5/24", gateway: "fe80::1" }, "network.gateway");
    bad({ mac, address: "10.0.0.5/24", nameservers: ["dns.google"] }, "network.nameservers[0]");
  });

  it("network-config is understood by cloud-init (net-convert)", () => {
    const file = join(dir, "network-config");
    writeFileSync(
      file,
      renderNetworkConfig({
        mac,
        address: "10.0.0.5/24",
        gateway: "10.0.0.1",
        nameservers: ["1.1.1.1"],
      }),
    );
    const out = join(dir, "net-out");
    const r = spawnSync(
      "cloud-init",
      [
        "devel",
        "net-convert",
        "-p",
        file,
        "-k",
        "yaml",
        "-d",
        out,
        "-D",
        "debian",
        "-O",
        "networkd",
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const unit = readFileSync(join(out, "etc/systemd/network/10-cloud-init-eth0.network"), "utf8");
    assert.match(unit, /MACAddress=02:00:00:12:34:56/);
    assert.match(unit, /Address=10\.0\.0\.5\/24/);
    assert.match(unit, /Gateway=10\.0\.0\.1/);
    assert.match(unit, /DNS=1\.1\.1\.1/);
  });

  it("instance-id changes exactly when user-data or network-config change", () => {
    const base = { vmId: "vm1", hostname: "box", spec, agentBinary };
    const a = buildSeed(base);
    assert.match(a.instanceId, /^corral-vm1-[0-9a-f]{16}$/);
    assert.equal(buildSeed(base).instanceId, a.instanceId);
    assert.equal(buildSeed({ ...base, hostname: "other" }).instanceId, a.instanceId);
    const changed = parseCloudInit({ ...fullSpec, packages: ["curl"] });
    assert.notEqual(buildSeed({ ...base, spec: changed }).instanceId, a.instanceId);
    assert.notEqual(
      buildSeed({ ...base, agentBinary: Buffer.from("other agent") }).instanceId,
      a.instanceId,
    );
    assert.notEqual(buildSeed({ ...base, network: { mac, dhcp: true } }).instanceId, a.instanceId);
    assert.equal(instanceIdFor("vm1", a.userData), a.instanceId);
    assert.notEqual(instanceIdFor("vm1", a.userData, "x"), a.instanceId);
  });
});

describe("buildSeed / writeSeed", () => {
  const options = {
    vmId: "vm1",
    hostname: "box",
    spec,
    agentBinary,
    network: { mac: "02:00:00:12:34:56", dhcp: true as const },
  };

  it("is deterministic and says its instance-id in meta-data", () => {
    const a = buildSeed(options);
    assert.equal(a.iso.equals(buildSeed(options).iso), true);
    assert.deepEqual(parse(a.metaData), { "instance-id": a.instanceId, "local-hostname": "box" });
    assert.equal(a.networkConfig, renderNetworkConfig(options.network));
    assert.equal(buildSeed({ ...options, network: undefined }).networkConfig, undefined);
  });

  it("holds user-data, meta-data and network-config on a cidata volume", () => {
    const seed = buildSeed(options);
    const path = join(dir, "seed.iso");
    writeFileSync(path, seed.iso);
    assert.match(
      spawnSync("isoinfo", ["-d", "-i", path], { encoding: "utf8" }).stdout,
      /^Volume id: cidata$/m,
    );
    const files: [string, string][] = [
      ["user-data", seed.userData],
      ["meta-data", seed.metaData],
      ["network-config", seed.networkConfig!],
    ];
    for (const [name, content] of files) {
      const r = spawnSync("isoinfo", ["-R", "-x", `/${name}`, "-i", path], {
        maxBuffer: 16 * 1024 * 1024,
      });
      assert.equal(r.status, 0);
      assert.equal(r.stdout.equals(Buffer.from(content)), true, name);
    }
    const list = spawnSync("isoinfo", ["-l", "-R", "-i", path], { encoding: "utf8" }).stdout;
    const names = list.split("\n").flatMap((l) => /\]\s\s(\S+)\s*$/.exec(l)?.[1] ?? []);
    assert.deepEqual(names.filter((n) => n !== "." && n !== "..").sort(), [
      "meta-data",
      "network-config",
      "user-data",
    ]);

    const noNet = join(dir, "seed-nonet.iso");
    writeFileSync(noNet, buildSeed({ ...options, network: undefined }).iso);
    const r = spawnSync("isoinfo", ["-l", "-R", "-i", noNet], { encoding: "utf8" });
    assert.doesNotMatch(r.stdout, /network-config/);
  });

  it("writeSeed writes atomically, mode 0600", () => {
    const sub = mkdtempSync(join(dir, "write-"));
    const path = join(sub, "seed.iso");
    writeFileSync(path, "old");
    const seed = writeSeed(path, options);
    assert.equal(readFileSync(path).equals(seed.iso), true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(sub), ["seed.iso"]);
  });
});
