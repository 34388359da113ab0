/**
 * QEMU's guest channel device (vhost-user-vsock-pci behind a hotplug root port) and the
 * snapshot workaround it needs: QEMU 7.2 cannot migrate vhost-user-vsock, so a save unplugs
 * it, and afterwards (and after a restore) a fresh device is plugged in, served by a fresh
 * sidecar (a vhost-device-vsock 0.3.0 process serves one device in its life).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CorralError, isCorralError } from "../../errors.js";
import type { AgentProbe } from "../driver.js";
import { VSOCK_CHARDEV_ID, VSOCK_DEVICE_ID, VSOCK_ROOT_PORT } from "./args.js";
import { withQmp } from "./control.js";
import type { QmpClient } from "./qmp.js";

/** device_del completes in ~90 ms under TCG with ACPI hotplug (docs/research/snapshot-spike.md). */
const UNPLUG_TIMEOUT_MS = 5_000;
const PLUG_TIMEOUT_MS = 10_000;
const DRIVER_OK_TIMEOUT_MS = 10_000;
/** How long a freshly plugged guest channel may stay silent before it is plugged again. */
const PLUGGED_ANSWER_MS = 20_000;
const PROBE_RETRY_MS = 5;
/** virtio-vsock's queues: 0 receive, 1 transmit, 2 event. */
const VSOCK_RX_QUEUE = 0;
const VSOCK_EVENT_QUEUE = 2;

export interface ChannelPlugs {
  qmpSocket: string;
  vhostUserSocket: string;
  /** The lifecycle replaces the sidecar (the shim's SIGUSR1); resolves once it listens. */
  replaceSidecar(): Promise<void>;
  notice(message: string): void;
}

/** Removes the guest channel device; resolves once the guest let go of it. */
export async function unplugChannel(qmpSocket: string): Promise<void> {
  await withQmp(qmpSocket, async (qmp) => {
    // Two DEVICE_DELETED events come (the virtio backend, then the device): wait for ours.
    const deleted = qmp.waitForEvent("DEVICE_DELETED", {
      timeoutMs: UNPLUG_TIMEOUT_MS,
      filter: (e) => (e.data as { device?: string } | undefined)?.device === VSOCK_DEVICE_ID,
    });
    deleted.catch(() => {});
    await qmp.execute("device_del", { id: VSOCK_DEVICE_ID });
    await deleted;
  });
}

async function plugChannel(qmpSocket: string, vhostUserSocket: string): Promise<void> {
  await withQmp(qmpSocket, async (qmp) => {
    await qmp.execute("chardev-remove", { id: VSOCK_CHARDEV_ID }).catch(() => {});
    await qmp.execute("chardev-add", {
      id: VSOCK_CHARDEV_ID,
      backend: {
        type: "socket",
        data: { addr: { type: "unix", data: { path: vhostUserSocket } }, server: false },
      },
    });
    // Seen once: device_add against a stale sidecar wedged QEMU's main loop. The sidecar
    // is always fresh here; the timeout turns any such hang into an error, not a hang.
    await qmp.execute(
      "device_add",
      {
        driver: "vhost-user-vsock-pci",
        id: VSOCK_DEVICE_ID,
        chardev: VSOCK_CHARDEV_ID,
        bus: VSOCK_ROOT_PORT,
      },
      { timeoutMs: PLUG_TIMEOUT_MS },
    );
    await waitForVsockDriver(qmp, `/machine/peripheral/${VSOCK_DEVICE_ID}/virtio-backend`);
  });
}

/**
 * Plugs the guest channel into a running VM and waits for the agent to answer (the probe
 * also sets the guest clock). A channel that stays silent (the sidecar wedged: seen with
 * vhost-device-vsock 0.3.0 when connections arrive during driver setup) is unplugged and
 * plugged in again with a fresh sidecar, once.
 */
export async function plugUntilAnswered(plugs: ChannelPlugs, probe: AgentProbe): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await plugChannel(plugs.qmpSocket, plugs.vhostUserSocket);
    const deadline = Date.now() + PLUGGED_ANSWER_MS;
    let answered = false;
    while (!answered && Date.now() < deadline) {
      answered = await probe.setTime({ timeoutMs: 2_000 }).then(
        () => true,
        (err) => {
          // The agent answered and refused: that is not a silent channel.
          if (isCorralError(err, "AGENT") && err.details?.guestCode !== undefined) throw err;
          return false;
        },
      );
      if (!answered) await sleep(PROBE_RETRY_MS);
    }
    if (answered) return;
    if (attempt === 2) {
      throw new CorralError("NOT_READY", "the guest agent did not answer on the new channel");
    }
    plugs.notice("the guest channel stayed silent: plugging it in again");
    await unplugChannel(plugs.qmpSocket);
    await plugs.replaceSidecar();
    probe.dropIdle();
  }
}

/**
 * Waits until the guest's driver has set up a hot-plugged virtio-vsock device: DRIVER_OK,
 * then buffers posted on its receive and event queues. Linux's virtio_vsock sets DRIVER_OK
 * before it fills those queues, and a hybrid-vsock CONNECT that reaches the guest before
 * they are filled was seen to wedge vhost-device-vsock 0.3.0 (about one restore in three
 * without this wait; the boot path waits for the agent's READY notice instead). Both queries
 * are marked unstable (x-): without them, a short pause has to do.
 */
async function waitForVsockDriver(qmp: QmpClient, path: string): Promise<void> {
  const deadline = Date.now() + DRIVER_OK_TIMEOUT_MS;
  const driverOk = async (): Promise<boolean> => {
    const r = await qmp.execute<{ status?: { statuses?: string[] } }>("x-query-virtio-status", {
      path,
    });
    return (r.status?.statuses ?? []).some((s) => s.includes("DRIVER_OK"));
  };
  const buffersPosted = async (): Promise<boolean> => {
    for (const queue of [VSOCK_RX_QUEUE, VSOCK_EVENT_QUEUE]) {
      const element = await qmp.execute<{ avail?: { idx?: number } }>(
        "x-query-virtio-queue-element",
        { path, queue },
      );
      if ((element.avail?.idx ?? 0) === 0) return false;
    }
    return true;
  };
  const pause = () => sleep(200);
  let sinceOk: number | undefined;
  for (;;) {
    try {
      if (sinceOk === undefined && (await driverOk())) sinceOk = Date.now();
    } catch (err) {
      if (isCorralError(err, "VMM_CONTROL")) return pause();
      throw err;
    }
    if (sinceOk !== undefined) {
      try {
        if (await buffersPosted()) return;
      } catch (err) {
        if (!isCorralError(err, "VMM_CONTROL")) throw err;
        // A ring QEMU cannot read yet fails the query: retry a while, then pause instead.
        if (Date.now() - sinceOk > 1_000) return pause();
      }
    }
    if (Date.now() > deadline) {
      throw new CorralError("TIMEOUT", "the guest did not set up the new vsock device within 10 s");
    }
    await sleep(5);
  }
}
