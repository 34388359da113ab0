/**
 * A network namespace of the test's own, with its own /etc/hosts (ip netns exec bind-mounts
 * /etc/netns/<ns>/hosts over /etc/hosts), so names resolve on the "host" side exactly as a
 * real resolver would, without touching this machine's configuration or network.
 */
import { execFileSync, type SpawnOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestNetns {
  name: string;
  /** argv prefix that runs a command inside the namespace. */
  exec: string[];
  spawn(argv: string[], options?: SpawnOptions): ReturnType<typeof spawn>;
  remove(): void;
}

export function createNetns(options: { addresses: string[]; hosts: Record<string, string> }) {
  const name = `corral-t${randomBytes(3).toString("hex")}`;
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
  ip("netns", "add", name);
  const etc = join("/etc/netns", name);
  try {
    ip("-n", name, "link", "set", "lo", "up");
    for (const address of options.addresses) ip("-n", name, "addr", "add", address, "dev", "lo");
    mkdirSync(etc, { recursive: true });
    const lines = [
      "127.0.0.1 localhost",
      ...Object.entries(options.hosts).map(([h, a]) => `${a} ${h}`),
    ];
    writeFileSync(join(etc, "hosts"), `${lines.join("\n")}\n`);
  } catch (err) {
    ip("netns", "del", name);
    throw err;
  }
  const exec = ["ip", "netns", "exec", name];
  return {
    name,
    exec,
    spawn: (argv: string[], opts: SpawnOptions = {}) =>
      spawn(exec[0]!, [...exec.slice(1), ...argv], { stdio: "pipe", ...opts }),
    remove() {
      try {
        ip("netns", "del", name);
      } finally {
        rmSync(etc, { recursive: true, force: true });
      }
    },
  } satisfies TestNetns;
}
