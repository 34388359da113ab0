/** set_time: the host sets the guest's wall clock (after a pause or a restore). */
import { CorralError } from "../../errors.js";
import { AgentConnection } from "./connection.js";
import { decodeKvMap, parseUint, requireKey } from "./frames.js";
import type { OpenStream } from "./kept.js";

/** `timeoutMs` bounds the wait for the reply (the connection is dropped then). */
export async function setGuestTime(
  open: OpenStream,
  timeMs: number,
  timeoutMs?: number,
): Promise<void> {
  if (!Number.isSafeInteger(timeMs) || timeMs < 0) {
    throw new CorralError("INVALID_ARGUMENT", `timeMs: ${timeMs} is not a time in milliseconds`);
  }
  const { socket, keep } = await open();
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    const conn = new AgentConnection(
      socket,
      "Z",
      {
        frame: (frame) => {
          const echoed = parseUint(
            requireKey(decodeKvMap(frame.payload), "time_ms", "Z"),
            2 ** 52,
            "time_ms",
          );
          if (echoed !== timeMs) {
            throw new CorralError(
              "AGENT_PROTOCOL",
              `guest set time ${echoed}, corral asked ${timeMs}`,
            );
          }
          conn.complete();
          resolve();
        },
        failed: reject,
      },
      keep,
    );
    conn.request("set_time", [["time_ms", String(timeMs)]]);
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () =>
          conn.fail(
            new CorralError("TIMEOUT", `guest agent did not answer within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
    }
  }).finally(() => clearTimeout(timer));
}
