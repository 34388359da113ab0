/**
 * Renders a NoCloud seed's documents: user-data (`#cloud-config`), meta-data and an optional
 * network-config (v2). YAML comes from the `yaml` package, emitted for YAML 1.1 (cloud-init
 * parses with PyYAML, where `on`, `0644` or `1:30` are not strings unless quoted), with no
 * aliases and no line folding. docs/cloud-init.md has the field mapping.
 *
 * Every user-data carries corral's agent step, so the host can exec in the guest:
 *  - write_files (init stage): the agent binary, base64, 0755 root:root, and its systemd unit;
 *  - runcmd, first entries: `systemctl daemon-reload`, `systemctl enable --now` the unit.
 * Why runcmd and not bootcmd: bootcmd runs before write_files in the init stage, so on the
 * first boot the binary is not there yet; and units written during boot are only seen after
 * a daemon-reload. runcmd runs in the final stage (after packages are installed), so the
 * first boot is ready only then; `enable` makes every later boot start the agent from
 * systemd directly, without cloud-init (runcmd runs once per instance).
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { stringify } from "yaml";
import { CorralError } from "../../errors.js";
import { AGENT_BINARY_PATH, AGENT_UNIT_PATH, type CloudInitSpec } from "../../spec/cloud-init.js";

export interface AgentStep {
  /** The static guest agent (agent/). */
  binary: Uint8Array;
  /** vsock port the agent listens on (its --port); default: the agent's own default. */
  port?: number;
}

export const SUDO_ALL = "ALL=(ALL) NOPASSWD:ALL";
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const YAML_OPTIONS = {
  version: "1.1",
  aliasDuplicateObjects: false,
  lineWidth: 0,
} as const;

function yaml(value: unknown): string {
  return stringify(value, YAML_OPTIONS);
}

/** The agent's systemd unit. */
export function agentUnit(port?: number): string {
  // The egress relay too: exec'd programs find corral's proxy on 127.0.0.1:3128.
  const args = `${port === undefined ? "" : ` --port ${port}`} --egress-port 3128`;
  return [
    "[Unit]",
    "Description=corral guest agent",
    "After=systemd-modules-load.service",
    // Restart forever: the host has no other way into the guest.
    "StartLimitIntervalSec=0",
    "",
    "[Service]",
    "Type=simple",
    "ExecStartPre=-/sbin/modprobe vmw_vsock_virtio_transport",
    `ExecStart=${AGENT_BINARY_PATH}${args}`,
    "Restart=always",
    "RestartSec=1",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

function agentFiles(agent: AgentStep): Record<string, unknown>[] {
  if (!(agent.binary instanceof Uint8Array) || agent.binary.length === 0) {
    throw new CorralError("CLOUD_INIT", "agent.binary: the agent binary is empty", {
      hint: "build the agent first (images/agent-binary.ts)",
    });
  }
  const port = agent.port;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 0xffffffff)) {
    throw new CorralError("CLOUD_INIT", `agent.port: ${port} is not a vsock port`);
  }
  return [
    {
      path: AGENT_BINARY_PATH,
      // Never anything but base64: binary bytes are not YAML text.
      encoding: "b64",
      content: Buffer.from(agent.binary).toString("base64"),
      owner: "root:root",
      permissions: "0755",
    },
    {
      path: AGENT_UNIT_PATH,
      content: agentUnit(port),
      owner: "root:root",
      permissions: "0644",
    },
  ];
}

const AGENT_RUNCMD = [
  ["systemctl", "daemon-reload"],
  ["systemctl", "enable", "--now", "corral-agent.service"],
];

/** The cloud-config object for a spec, without the agent step. */
function cloudConfig(spec: CloudInitSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (spec.hostname !== undefined) {
    const dot = spec.hostname.indexOf(".");
    out.preserve_hostname = false;
    out.hostname = dot < 0 ? spec.hostname : spec.hostname.slice(0, dot);
    if (dot >= 0) out.fqdn = spec.hostname;
  }
  if (spec.timezone !== undefined) out.timezone = spec.timezone;
  if (spec.users.length > 0) {
    // Listing users replaces the image's default user; keep it when it gets keys.
    const users: unknown[] = spec.sshAuthorizedKeys.length > 0 ? ["default"] : [];
    for (const u of spec.users) {
      const entry: Record<string, unknown> = { name: u.name };
      if (u.groups !== undefined && u.groups.length > 0) entry.groups = [...u.groups];
      if (u.sudo === true) entry.sudo = SUDO_ALL;
      if (u.shell !== undefined) entry.shell = u.shell;
      entry.lock_passwd = u.lockPassword;
      if (u.sshAuthorizedKeys !== undefined && u.sshAuthorizedKeys.length > 0) {
        entry.ssh_authorized_keys = [...u.sshAuthorizedKeys];
      }
      users.push(entry);
    }
    out.users = users;
  }
  if (spec.sshAuthorizedKeys.length > 0) out.ssh_authorized_keys = [...spec.sshAuthorizedKeys];
  if (spec.packages.length > 0) {
    out.package_update = true;
    out.packages = [...spec.packages];
  }
  out.write_files = spec.writeFiles.map((f) => {
    const entry: Record<string, unknown> = { path: f.path };
    if (f.encoding === "base64") entry.encoding = "b64";
    entry.content = f.content;
    if (f.permissions !== undefined) entry.permissions = f.permissions;
    if (f.owner !== undefined) entry.owner = f.owner;
    if (f.append !== undefined) entry.append = f.append;
    if (f.defer ?? (f.owner !== undefined && f.owner !== "root:root")) entry.defer = true;
    return entry;
  });
  out.bootcmd = spec.bootcmd.map(copyCommand);
  out.runcmd = spec.runcmd.map(copyCommand);
  return out;
}

function copyCommand(c: string | string[]): string | string[] {
  return typeof c === "string" ? c : [...c];
}

/** `#cloud-config` user-data for a spec, with corral's agent step always in it. */
export function renderUserData(spec: CloudInitSpec, agent: AgentStep): string {
  const merged: Record<string, unknown> = { ...cloudConfig(spec), ...(spec.raw ?? {}) };
  const list = (key: string): unknown[] => {
    const value = merged[key];
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      throw new CorralError("CLOUD_INIT", `cloudInit.raw.${key}: must be a list`);
    }
    return value;
  };
  merged.write_files = [...agentFiles(agent), ...list("write_files")];
  merged.runcmd = [...AGENT_RUNCMD.map((c) => [...c]), ...list("runcmd")];
  if (list("bootcmd").length === 0) delete merged.bootcmd;
  return `#cloud-config\n${yaml(merged)}`;
}

export interface MetaData {
  instanceId: string;
  hostname: string;
}

export function renderMetaData(meta: MetaData): string {
  return yaml({ "instance-id": meta.instanceId, "local-hostname": meta.hostname });
}

/** The first NIC, matched by MAC and renamed eth0: DHCP or a static IPv4/IPv6 address. */
export type SeedNetwork = { mac: string } & (
  | { dhcp: true }
  | { address: string; gateway?: string; nameservers?: string[] }
);

/** network-config version 2 (netplan syntax) for the first NIC. */
export function renderNetworkConfig(net: SeedNetwork): string {
  const mac = net.mac?.toLowerCase();
  if (typeof mac !== "string" || !MAC.test(mac)) {
    throw new CorralError("CLOUD_INIT", `network.mac: ${JSON.stringify(net.mac)} is not a MAC`, {
      hint: "write the MAC as six hex pairs, e.g. 02:00:00:12:34:56",
    });
  }
  const eth0: Record<string, unknown> = { match: { macaddress: mac }, "set-name": "eth0" };
  if ("dhcp" in net) {
    eth0.dhcp4 = true;
  } else {
    const family = cidrFamily(net.address);
    if (family === 0) {
      throw new CorralError(
        "CLOUD_INIT",
        `network.address: ${JSON.stringify(net.address)} is not ADDRESS/PREFIX`,
        {
          hint: "e.g. 10.0.0.5/24",
        },
      );
    }
    eth0.addresses = [net.address];
    if (net.gateway !== undefined) {
      if (isIP(net.gateway) !== family) {
        throw new CorralError(
          "CLOUD_INIT",
          `network.gateway: ${JSON.stringify(net.gateway)} is not an IPv${family} address`,
        );
      }
      eth0.routes = [{ to: family === 4 ? "0.0.0.0/0" : "::/0", via: net.gateway }];
    }
    if (net.nameservers !== undefined && net.nameservers.length > 0) {
      net.nameservers.forEach((ns, i) => {
        if (isIP(ns) === 0) {
          throw new CorralError(
            "CLOUD_INIT",
            `network.nameservers[${i}]: ${JSON.stringify(ns)} is not an IP address`,
          );
        }
      });
      eth0.nameservers = { addresses: [...net.nameservers] };
    }
  }
  return yaml({ version: 2, ethernets: { eth0 } });
}

function cidrFamily(cidr: string): 0 | 4 | 6 {
  if (typeof cidr !== "string") return 0;
  const slash = cidr.lastIndexOf("/");
  if (slash < 0) return 0;
  const family = isIP(cidr.slice(0, slash));
  const prefix = cidr.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(prefix)) return 0;
  return Number(prefix) <= (family === 4 ? 32 : 128) ? (family as 4 | 6) : 0;
}

/**
 * `corral-<vmId>-<16 hex>`: the hash covers user-data and network-config, so the id changes
 * exactly when they do (cloud-init re-runs its per-instance modules only on a new id).
 */
export function instanceIdFor(vmId: string, userData: string, metaExtras = ""): string {
  const hash = createHash("sha256").update(userData).update("\0").update(metaExtras).digest("hex");
  return `corral-${vmId}-${hash.slice(0, 16)}`;
}
