/**
 * The per-user daemon: owns what must outlive a CLI process but belongs to no single VMM
 * (port forwards, egress proxies, switches; later pools and the REST API). VMMs stay with
 * their shims: if the daemon dies, VMs keep running and a new daemon re-adopts their
 * services from the instance directories.
 */
import { chmodSync, existsSync, rmSync } from "node:fs";
import { type AddressInfo, connect } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { writeFileAtomicSync } from "../base/atomic.js";
import { processStartTime } from "../base/process.js";
import { asCorralError, CorralError, type CorralErrorJson, httpStatus } from "../errors.js";
import type { GuestChannel } from "../guest/channel.js";
import type { InstancePaths } from "../paths/layout.js";
import { daemonPaths, ensurePrivateDir, runRoot, stateRoot } from "../paths/layout.js";
import { NAME_PATTERN } from "../spec/schema.js";
import { Manager } from "../vm/manager.js";
import { ACTIVE_STATES, type VmRecord } from "../vm/record.js";
import { needsHostServices } from "../vm/services.js";
import { loadVm } from "../vm/store.js";
import { type PoolInput, Pools } from "./pools.js";
import { daemonServices } from "./services-client.js";
import { type VmServiceParts, VmServices } from "./vm-services.js";

export const DAEMON_VERSION = "1";

/** An error as the API answers it: the status follows from its kind, the body is its JSON. */
export function errorReply(err: unknown): { status: number; body: CorralErrorJson } {
  const error = asCorralError(err);
  return { status: httpStatus(error.kind), body: error.toJSON() };
}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}
const WATCH_INTERVAL_MS = 1_000;

export interface DaemonOptions {
  /** Exit after this long with nothing to serve; 0 = never. */
  idleMs?: number;
  /** Builds the egress proxy and switch port of a VM (wired in by daemon/main.ts). */
  startParts?: (
    record: VmRecord,
    paths: InstancePaths,
    channel: GuestChannel,
  ) => Promise<VmServiceParts>;
  log?: (message: string, fields?: Record<string, unknown>) => void;
  /** What `GET /v1/switches` reports. */
  switches?: () => unknown[];
}

export class Daemon {
  private readonly vms = new Map<string, VmServices>();
  /** Attaches and detaches of one VM run one after another. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly manager = new Manager({ services: daemonServices });
  private readonly pools = new Pools(this.manager, (message, fields) =>
    this.options.log?.(message, fields),
  );
  private app: FastifyInstance | undefined;
  private watcher: NodeJS.Timeout | undefined;
  private idleSince = Date.now();
  private closing: Promise<void> | undefined;
  private readonly closers: (() => void)[] = [];

  constructor(private readonly options: DaemonOptions = {}) {}

  private log(message: string, fields?: Record<string, unknown>) {
    this.options.log?.(message, fields);
  }

  async listen(): Promise<void> {
    const paths = daemonPaths();
    ensurePrivateDir(runRoot());
    if (existsSync(paths.socket)) {
      if (await answers(paths.socket)) {
        throw new CorralError("DAEMON", `a corral daemon already listens on ${paths.socket}`, {
          hint: 'stop it first with "corral daemon stop"',
        });
      }
      rmSync(paths.socket, { force: true });
    }
    const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
    // Any request counts as use: the idle exit must not race a client that just connected.
    app.addHook("onRequest", async () => {
      this.idleSince = Date.now();
    });
    this.routes(app);
    await app.listen({ path: paths.socket });
    chmodSync(paths.socket, 0o600);
    this.app = app;
    writeFileAtomicSync(
      paths.state,
      JSON.stringify({
        pid: process.pid,
        startTime: processStartTime(process.pid),
        version: DAEMON_VERSION,
        startedAt: new Date().toISOString(),
      }),
      0o600,
    );
    await this.adopt();
    this.pools.load();
    this.pools.kick();
    this.watcher = setInterval(() => void this.watch(), WATCH_INTERVAL_MS);
    this.watcher.unref();
  }

  /** Services of VMs that were running before this daemon started (a restart, a crash). */
  private async adopt(): Promise<void> {
    for (const vm of await this.manager.list().catch(() => [])) {
      if (ACTIVE_STATES.includes(vm.state) && needsHostServices(vm.spec)) {
        await this.attach(vm.name).catch((err) =>
          this.log("adopt failed", { vm: vm.name, error: String(err) }),
        );
      }
    }
  }

  /** Drops the services of VMs that are no longer running; exits when idle for long enough. */
  private async watch(): Promise<void> {
    for (const [name, services] of this.vms) {
      let active = false;
      try {
        const vm = await this.manager.inspect(name);
        active = vm.id === services.record.id && ACTIVE_STATES.includes(vm.state);
      } catch {
        active = false;
      }
      if (!active) await this.detach(name, services.record.id);
    }
    // A pool member that died is replaced.
    this.pools.kick();
    const idleMs = this.options.idleMs ?? 0;
    if (this.vms.size > 0 || this.pools.size > 0 || this.queues.size > 0) {
      this.idleSince = Date.now();
    } else if (idleMs > 0 && Date.now() - this.idleSince > idleMs) {
      this.log("idle: exiting");
      await this.close();
      process.exit(0);
    }
  }

  private serialize<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(task);
    this.queues.set(name, next);
    return next.finally(() => {
      if (this.queues.get(name) === next) this.queues.delete(name);
    });
  }

  attach(name: string): Promise<VmServices> {
    return this.serialize(name, async () => {
      const { record, paths } = loadVm(name);
      const existing = this.vms.get(name);
      if (existing !== undefined) {
        // A restart of the VM (new sockets) or a repeated attach: start afresh.
        this.vms.delete(name);
        await existing.close();
      }
      const channel = this.manager.drivers.get(record.spec.backend).channelFor(paths.vsockSocket);
      const services = await VmServices.attach(
        record,
        paths,
        channel,
        this.options.startParts ?? (async () => ({})),
      );
      this.vms.set(name, services);
      this.idleSince = Date.now();
      this.log("attached", { vm: name, id: record.id });
      return services;
    });
  }

  detach(name: string, id?: string): Promise<boolean> {
    return this.serialize(name, async () => {
      const services = this.vms.get(name);
      if (services === undefined || (id !== undefined && services.record.id !== id)) return false;
      this.vms.delete(name);
      await services.close();
      this.log("detached", { vm: name });
      return true;
    });
  }

  private routes(app: FastifyInstance): void {
    app.setErrorHandler((err, _req, reply) => {
      const { status, body } = errorReply(err);
      void reply.status(status).send(body);
    });
    const vmName = (params: unknown): string => {
      const name = (params as { name?: string }).name ?? "";
      if (!NAME_PATTERN.test(name)) {
        throw new CorralError("VM_NOT_FOUND", `no VM named "${name}"`);
      }
      return name;
    };
    app.get("/v1/health", async () => ({
      pid: process.pid,
      version: DAEMON_VERSION,
      startedAt: new Date(Date.now() - process.uptime() * 1000).toISOString(),
      stateDir: stateRoot(),
    }));
    app.get("/v1/vms", async () => [...this.vms.values()].map((s) => s.status()));
    app.get("/v1/switches", async () => this.options.switches?.() ?? []);
    app.get("/v1/vms/:name/services", async (req) => {
      const services = this.vms.get(vmName(req.params));
      if (services === undefined) {
        throw new CorralError("VM_NOT_FOUND", "the daemon serves nothing for this VM");
      }
      return services.status();
    });
    app.put("/v1/vms/:name/services", async (req) =>
      (await this.attach(vmName(req.params))).status(),
    );
    app.delete("/v1/vms/:name/services", async (req) => ({
      detached: await this.detach(vmName(req.params)),
    }));
    app.get("/v1/pools", async () => this.pools.list());
    app.post("/v1/pools", async (req) => this.pools.create((req.body ?? {}) as PoolInput));
    app.delete("/v1/pools/:name", async (req) => {
      await this.pools.remove((req.params as { name: string }).name);
      return { removed: true };
    });
    app.post("/v1/pools/:name/take", async (req) => ({
      name: await this.pools.take((req.params as { name: string }).name),
    }));
    app.post("/v1/shutdown", async (_req, reply) => {
      await reply.send({ stopping: true });
      setImmediate(() => void this.close().then(() => process.exit(0)));
    });
  }

  onClose(closer: () => void): void {
    this.closers.push(closer);
  }

  address(): string | AddressInfo | null {
    return this.app?.server.address() ?? null;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.watcher !== undefined) clearInterval(this.watcher);
      await this.pools.close();
      await Promise.all([...this.vms.values()].map((s) => s.close().catch(() => {})));
      this.vms.clear();
      for (const closer of this.closers) closer();
      await this.app?.close().catch(() => {});
      const paths = daemonPaths();
      rmSync(paths.socket, { force: true });
      rmSync(paths.state, { force: true });
    })();
    return this.closing;
  }
}
