/** QMP sessions for the QEMU driver: one short connection per command (CLI processes are short-lived). */
import { retryUntil, waitForPath } from "../../base/wait.js";
import { isCorralError } from "../../errors.js";
import { QmpClient } from "./qmp.js";

const QMP_CONNECT_TIMEOUT_MS = 15_000;

export async function withQmp<T>(socket: string, use: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(socket, { timeoutMs: 5_000 });
  try {
    return await use(qmp);
  } finally {
    await qmp.close();
  }
}

/** The first connection to a QEMU that is starting: its socket appears, then listens. */
export async function connectWhenListening(
  socket: string,
  signal?: AbortSignal,
): Promise<QmpClient> {
  await waitForPath(socket, QMP_CONNECT_TIMEOUT_MS, signal);
  // QEMU binds the socket a moment before it listens: ECONNREFUSED in between is normal.
  return retryUntil(
    () =>
      QmpClient.connect(socket, { timeoutMs: QMP_CONNECT_TIMEOUT_MS }).catch((err) => {
        if (isCorralError(err, "VMM_CONTROL") && err.details?.errno === "ECONNREFUSED")
          return undefined;
        throw err;
      }),
    { timeoutMs: QMP_CONNECT_TIMEOUT_MS, intervalMs: 5, signal },
  );
}
