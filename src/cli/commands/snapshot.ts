import type { Command } from "commander";
import {
  formatSize,
  Manager,
  parseSize,
  type SnapshotMeta,
  stateBytes,
  summarizeSnapshot,
} from "../../index.js";
import { abortOnInterrupt } from "../interrupt.js";
import { age, printJson, printTable } from "../render.js";

export function registerSnapshotCommands(program: Command): void {
  const manager = () => new Manager();
  const snapshot = program
    .command("snapshot")
    .description("save running VMs (memory, devices, disks) and list or remove the snapshots");
  snapshot
    .command("create")
    .description("snapshot a running VM; it keeps running (connections to its agent are cut)")
    .argument("<vm>", "VM name")
    .argument("<snapshot>", "snapshot name")
    .option("--json", "print the snapshot as JSON")
    .action(async (vm: string, name: string, flags: { json?: boolean }) => {
      // Ctrl-C mid-save would leave the VM paused without its guest channel: finish first.
      const defer = () => process.stderr.write("corral: finishing the snapshot first\n");
      process.on("SIGINT", defer);
      let meta: SnapshotMeta;
      try {
        meta = await manager().snapshot(vm, name);
      } finally {
        process.off("SIGINT", defer);
      }
      if (flags.json) return printJson(summarizeSnapshot(meta));
      process.stdout.write(
        `${meta.name}: ${formatSize(stateBytes(meta))} of state, VM paused ${meta.pausedMs} ms\n`,
      );
    });
  snapshot
    .command("ls")
    .description("list snapshots")
    .option("--json", "print JSON")
    .action((flags: { json?: boolean }) => {
      const list = manager().listSnapshots().map(summarizeSnapshot);
      if (flags.json) return printJson(list);
      printTable(
        ["NAME", "FROM", "CREATED", "MEMORY", "DISKS", "IMAGE"],
        list.map((s) => [
          s.name,
          s.source,
          age(s.createdAt),
          formatSize(s.memoryBytes),
          formatSize(s.diskBytes),
          s.image,
        ]),
      );
    });
  snapshot
    .command("rm")
    .description("remove snapshots (VMs restored from them keep running)")
    .argument("<snapshot...>", "snapshot names")
    .action(async (names: string[]) => {
      for (const name of names) {
        await manager().removeSnapshot(name);
        process.stdout.write(`${name}\n`);
      }
    });
  snapshot
    .command("verify")
    .description("check every file of a snapshot against its SHA-256")
    .argument("<snapshot>", "snapshot name")
    .action(async (name: string) => {
      await manager().verifySnapshot(name);
      process.stdout.write(`${name}: ok\n`);
    });

  program
    .command("restore")
    .description("start a new VM from a snapshot")
    .argument("<snapshot>", "snapshot name")
    .option("--name <name>", "name of the new VM (default: generated)")
    .option("--json", "print the VM as JSON")
    .action(async (name: string, flags: { name?: string; json?: boolean }) => {
      const interrupt = abortOnInterrupt();
      try {
        const vm = await manager().restore(name, { name: flags.name, signal: interrupt.signal });
        if (flags.json) return printJson({ name: vm.name, id: vm.id, state: vm.state });
        process.stdout.write(`${vm.name}\n`);
      } finally {
        interrupt.dispose();
      }
    });

  program
    .command("set")
    .description("change a running VM's resources")
    .argument("<vm>", "VM name")
    .requiredOption(
      "--memory-target <size>",
      "balloon the guest down to this much memory, e.g. 256M",
    )
    .option("--json", "print JSON")
    .action(async (vm: string, flags: { memoryTarget: string; json?: boolean }) => {
      const result = await manager().setMemoryTarget(
        vm,
        parseSize(flags.memoryTarget, "--memory-target"),
      );
      if (flags.json) return printJson(result);
      process.stdout.write(
        `${vm}: memory target ${formatSize(result.targetBytes)} (now ${formatSize(result.actualBytes)})\n`,
      );
    });
}
