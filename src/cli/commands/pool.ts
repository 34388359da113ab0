import type { Command } from "commander";
import { createPool, listPools, removePool } from "../../index.js";
import { parseIntFlag, specFromFlags, type VmFlags } from "../options.js";
import { printJson, printTable } from "../render.js";
import { addVmFlags } from "./run.js";

export function registerPoolCommands(program: Command): void {
  const pool = program
    .command("pool")
    .description("warm pools: ready VMs that `corral run --pool` hands out in milliseconds");
  addVmFlags(
    pool
      .command("create")
      .description("keep --size VMs ready (booted from the flags, or restored with --from)")
      .argument("<name>", "pool name")
      .requiredOption("--size <n>", "how many ready VMs to keep")
      .option("--from <snapshot>", "restore members from this snapshot instead of booting")
      .option("--json", "print JSON"),
  ).action(
    async (name: string, flags: VmFlags & { size: string; from?: string; json?: boolean }) => {
      const { name: _ignored, ...spec } = specFromFlags(flags);
      const status = await createPool({
        name,
        size: parseIntFlag(flags.size, "--size", 1, 64),
        spec,
        ...(flags.from === undefined ? {} : { fromSnapshot: flags.from }),
      });
      if (flags.json) return printJson(status);
      process.stdout.write(`${name}: filling to ${status.size} VMs in the background\n`);
    },
  );
  pool
    .command("ls")
    .description("list pools and how many VMs each has ready")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const pools = await listPools();
      if (flags.json) return printJson(pools);
      printTable(
        ["NAME", "SIZE", "READY", "STARTING", "HANDED OUT", "NOTE"],
        pools.map((p) => [
          p.name,
          String(p.size),
          String(p.ready.length),
          String(p.starting),
          String(p.handedOut),
          p.lastError ?? "",
        ]),
      );
    });
  pool
    .command("rm")
    .description("remove a pool and its ready VMs")
    .argument("<name...>", "pool names")
    .action(async (names: string[]) => {
      for (const name of names) {
        await removePool(name);
        process.stdout.write(`${name}\n`);
      }
    });
}
