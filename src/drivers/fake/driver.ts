/**
 * The fake backend: a real process tree under corral's real shim (drivers/fake/vmm.ts and
 * corral's agent run on the host), with no virtualisation. It exists so the lifecycle and the
 * driver conformance suite (test/conformance) run in seconds, and so the Driver/Machine
 * contract has a second implementation to keep it honest. Not registered by default: tests
 * and embedders add it (`new Manager({ driver: new FakeDriver() })`).
 */
import { createHash } from "node:crypto";
import { constants as fsConstants, readFileSync, statSync } from "node:fs";
import { copyFile, truncate, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { retryUntil, waitForPath } from "../../base/wait.js";
import { CorralError, throwIfCancelled } from "../../errors.js";
import type { GuestChannel } from "../../guest/channel.js";
import { HybridVsockChannel } from "../../guest/hybrid-vsock-channel.js";
import { buildAgent } from "../../images/agent-binary.js";
import type { VmSpec } from "../../spec/schema.js";
import type {
  BootMode,
  DiskBackend,
  Driver,
  DriverFeatures,
  LaunchPlan,
  Machine,
  MachineHost,
  SaveContext,
  SaveResult,
  Snapshotter,
  SpecProblem,
  VmContext,
} from "../driver.js";

export const FAKE_FEATURES: DriverFeatures = {
  hosts: ["linux", "darwin"],
  machines: [],
  accelerators: ["tcg"],
  diskFormats: ["raw"],
  networks: ["none"],
  sharedFolders: [],
  firmware: ["direct"],
  cdrom: false,
  cloudImages: false,
  gracefulStop: "acpi-power-button",
  guestChannel: "hybrid-vsock",
  pause: true,
  balloon: false,
  snapshots: { guestChannelSurvives: true },
  hotplug: [],
  counters: false,
};

const STATE_FILE = "fake-state.json";
const API_TIMEOUT_MS = 5_000;
const PROBE_TIMEOUT_MS = 20_000;

/** Raw files: copies (reflinked where the filesystem can) and sparse new files. */
const rawDisks: DiskBackend = {
  fileName: (role) => `${role}.img`,
  probe: async () => "raw",
  async overlay(base, dest, options = {}) {
    await copyFile(base, dest, fsConstants.COPYFILE_FICLONE);
    if (options.sizeMiB !== undefined) await truncate(dest, options.sizeMiB * 1024 * 1024);
    return { path: dest, format: "raw" };
  },
  async empty(dest, sizeMiB) {
    await writeFile(dest, "", { mode: 0o600 });
    await truncate(dest, sizeMiB * 1024 * 1024);
    return { path: dest, format: "raw" };
  },
};

export class FakeDriver implements Driver {
  readonly name = "fake" as const;
  readonly features: DriverFeatures;
  readonly disks = rawDisks;

  /** `features`: a fake that can do less (tests of what the lifecycle refuses). */
  constructor(options: { features?: Partial<DriverFeatures> } = {}) {
    this.features = { ...FAKE_FEATURES, ...options.features };
  }

  validate(_spec: VmSpec): SpecProblem[] {
    return [];
  }

  async version(): Promise<string> {
    return "fake-vmm 1";
  }

  channelFor(channelSocket: string): GuestChannel {
    return new HybridVsockChannel(channelSocket);
  }

  open(vm: VmContext, host: MachineHost): Machine {
    return new FakeMachine(vm, host, this.features);
  }
}

class FakeMachine implements Machine {
  readonly channel: GuestChannel;
  readonly snapshots: Snapshotter | undefined;
  private readonly api: string;

  constructor(
    private readonly vm: VmContext,
    private readonly host: MachineHost,
    features: DriverFeatures,
  ) {
    this.channel = new HybridVsockChannel(vm.channelSocket);
    this.api = join(vm.runDir, "fake-api.sock");
    this.snapshots = features.snapshots === false ? undefined : this.snapshotter();
  }

  async plan(mode: BootMode): Promise<LaunchPlan> {
    const agent = await buildAgent();
    const agentSocket = join(this.vm.runDir, "agent.sock");
    const restore = mode.kind === "restore" ? verifiedStateFile(mode) : undefined;
    return {
      accelerator: { accel: "tcg", reason: "the fake backend emulates nothing" },
      helpers: [{ argv: [agent, "--listen-unix", agentSocket], readyPath: agentSocket }],
      vmm: {
        argv: [
          ...nodeArgv(),
          "--channel",
          this.vm.channelSocket,
          "--agent",
          agentSocket,
          "--api",
          this.api,
          "--ram",
          join(this.vm.instanceDir, "ram"),
          "--serial",
          this.vm.serialLog,
          ...(restore === undefined ? [] : ["--restore", restore]),
        ],
      },
    };
  }

  async boot(mode: BootMode, signal?: AbortSignal): Promise<void> {
    await waitForPath(this.api, API_TIMEOUT_MS, signal);
    // The socket file appears a moment before it listens (bind, then listen), as QEMU's does.
    await retryUntil(() => this.call({ op: "status" }).catch(() => undefined), {
      timeoutMs: API_TIMEOUT_MS,
      intervalMs: 5,
      signal,
    });
    if (mode.kind === "boot") return;
    await this.call({ op: "resume" });
    const deadline = Date.now() + PROBE_TIMEOUT_MS;
    for (;;) {
      throwIfCancelled(signal);
      try {
        await this.host.probe.setTime({ timeoutMs: 2_000 });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await sleep(10);
    }
  }

  async requestShutdown(): Promise<void> {
    await this.call({ op: "powerdown" });
  }

  async pause(): Promise<void> {
    await this.call({ op: "pause" });
  }

  async resume(): Promise<void> {
    await this.call({ op: "resume" });
  }

  dispose(): void {}

  private snapshotter(): Snapshotter {
    return {
      check: () => [],
      save: async (ctx: SaveContext): Promise<SaveResult> => {
        if (!ctx.wasPaused) await this.call({ op: "pause" });
        const pausedAt = Date.now();
        try {
          await ctx.whileFrozen();
          await this.call({ op: "save", dir: ctx.dir });
        } finally {
          if (!ctx.wasPaused) await this.call({ op: "resume" });
        }
        const path = join(ctx.dir, STATE_FILE);
        const data = readFileSync(path);
        return {
          files: [
            {
              file: STATE_FILE,
              role: "memory",
              sha256: createHash("sha256").update(data).digest("hex"),
              size: statSync(path).size,
            },
          ],
          pausedMs: Date.now() - pausedAt,
        };
      },
    };
  }

  /** One request on the fake VMM's control socket; its reply is bounded and checked. */
  private call(request: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.api);
      let reply = "";
      const fail = (message: string) => {
        socket.destroy();
        reject(new CorralError("VM_FAILED", `the fake VMM ${message}`));
      };
      socket.setTimeout(API_TIMEOUT_MS, () => fail("did not answer"));
      socket.on("error", (err) => fail(`is unreachable: ${err.message}`));
      socket.on("data", (chunk: Buffer) => {
        reply += chunk.toString("utf8");
        if (reply.length > 4096) fail("sent an oversized reply");
      });
      socket.on("end", () => {
        try {
          const parsed = JSON.parse(reply) as Record<string, unknown>;
          if (parsed.ok !== true)
            return fail(`refused ${String(request.op)}: ${String(parsed.error)}`);
          resolve(parsed);
        } catch {
          fail("sent a reply that is not JSON");
        }
      });
      socket.end(`${JSON.stringify(request)}\n`);
    });
  }
}

/** The state file, checked against what was recorded at save time before anything loads it. */
function verifiedStateFile(mode: Extract<BootMode, { kind: "restore" }>): string {
  const expected = mode.files.find((f) => f.file === STATE_FILE);
  const path = join(mode.dir, STATE_FILE);
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    data = Buffer.alloc(0);
  }
  const sha256 = createHash("sha256").update(data).digest("hex");
  if (expected === undefined || expected.sha256 !== sha256 || expected.size !== data.length) {
    throw new CorralError(
      "SNAPSHOT_DAMAGED",
      `the snapshot's ${STATE_FILE} does not match its SHA-256`,
    );
  }
  return path;
}

/** Node running vmm.ts (from source under tsx in tests) or vmm.js (built). */
function nodeArgv(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".ts")) {
    return [
      process.execPath,
      "--import",
      import.meta.resolve("tsx"),
      here.replace(/driver\.ts$/, "vmm.ts"),
    ];
  }
  return [process.execPath, here.replace(/driver\.js$/, "vmm.js")];
}
