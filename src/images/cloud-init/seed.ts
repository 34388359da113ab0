/**
 * A cloud-init NoCloud seed: an ISO 9660 volume labelled `cidata` holding `user-data`,
 * `meta-data` and, when the VM has a NIC to configure, `network-config`
 * (docs/cloud-init.md). Byte-for-byte deterministic for the same inputs.
 */
import { writeFileAtomicSync } from "../../base/atomic.js";
import { buildIso, type IsoFile } from "../../protocols/iso9660/index.js";
import type { CloudInitSpec } from "../../spec/cloud-init.js";
import {
  instanceIdFor,
  renderMetaData,
  renderNetworkConfig,
  renderUserData,
  type SeedNetwork,
} from "./user-data.js";

export const SEED_VOLUME_ID = "cidata";

export interface SeedOptions {
  vmId: string;
  /** meta-data local-hostname (the spec's `hostname`, when set, wins in user-data). */
  hostname: string;
  spec: CloudInitSpec;
  agentBinary: Uint8Array;
  /** The agent's vsock port, when not its default. */
  agentPort?: number;
  network?: SeedNetwork;
}

export interface Seed {
  iso: Buffer;
  instanceId: string;
  userData: string;
  metaData: string;
  networkConfig?: string;
}

export function buildSeed(options: SeedOptions): Seed {
  const userData = renderUserData(options.spec, {
    binary: options.agentBinary,
    ...(options.agentPort === undefined ? {} : { port: options.agentPort }),
  });
  const networkConfig =
    options.network === undefined ? undefined : renderNetworkConfig(options.network);
  const instanceId = instanceIdFor(options.vmId, userData, networkConfig);
  const metaData = renderMetaData({ instanceId, hostname: options.hostname });
  const files: IsoFile[] = [
    { name: "user-data", data: Buffer.from(userData) },
    { name: "meta-data", data: Buffer.from(metaData) },
  ];
  if (networkConfig !== undefined) {
    files.push({ name: "network-config", data: Buffer.from(networkConfig) });
  }
  const iso = buildIso({ volumeId: SEED_VOLUME_ID, files });
  return {
    iso,
    instanceId,
    userData,
    metaData,
    ...(networkConfig === undefined ? {} : { networkConfig }),
  };
}

/**
 * Builds the seed and writes it atomically (temp file in the same directory, fsync, rename),
 * mode 0600: user-data may hold secrets.
 */
export function writeSeed(path: string, options: SeedOptions): Seed {
  const seed = buildSeed(options);
  writeFileAtomicSync(path, seed.iso, 0o600);
  return seed;
}
