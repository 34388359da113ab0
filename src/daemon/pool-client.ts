/** Warm pools, from the library's side: every call goes to the daemon that keeps them. */
import { DaemonClient } from "./client.js";
import type { PoolInput, PoolStatus } from "./pools.js";

async function withDaemon<T>(use: (daemon: DaemonClient) => Promise<T>): Promise<T> {
  const daemon = await DaemonClient.ensure();
  try {
    return await use(daemon);
  } finally {
    await daemon.close();
  }
}

export function createPool(pool: PoolInput): Promise<PoolStatus> {
  return withDaemon((d) => d.request<PoolStatus>("POST", "/v1/pools", pool));
}

export function listPools(): Promise<PoolStatus[]> {
  return withDaemon((d) => d.request<PoolStatus[]>("GET", "/v1/pools"));
}

export function removePool(name: string): Promise<void> {
  return withDaemon(async (d) => {
    await d.request("DELETE", `/v1/pools/${encodeURIComponent(name)}`);
  });
}

/** A ready VM from the pool, now the caller's to use and remove. */
export function takeFromPool(name: string): Promise<string> {
  return withDaemon(async (d) => {
    const r = await d.request<{ name: string }>(
      "POST",
      `/v1/pools/${encodeURIComponent(name)}/take`,
    );
    return r.name;
  });
}
