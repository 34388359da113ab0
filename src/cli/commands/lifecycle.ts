import { closeSync, openSync, readSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { ACTIVE_STATES, formatSize, Manager, type VmInfo } from "../../index.js";
import { abortOnInterrupt } from "../interrupt.js";
import { parseIntFlag, specFromFlags, type VmFlags } from "../options.js";
import { age, printJson, printTable } from "../render.js";
import { addVmFlags } from "./run.js";

function summary(vm: VmInfo) {
  return {
    name: vm.name,
    id: vm.id,
    state: vm.state,
    reason: vm.reason,
    cpus: vm.spec.cpus,
    memoryMiB: vm.spec.memory,
    image: `${vm.image.name}@${vm.image.digest.slice(0, 19)}`,
    accel: vm.accel?.accel,
    createdAt: vm.createdAt,
    startedAt: vm.startedAt,
    pids: vm.pids,
  };
}

export function registerLifecycleCommands(program: Command): void {
  const manager = () => new Manager();

  addVmFlags(program.command("create").description("create a VM without starting it")).action(
    async (flags: VmFlags) => {
      const vm = await manager().create(specFromFlags(flags));
      process.stdout.write(`${vm.name}\n`);
    },
  );

  program
    .command("start")
    .description("boot a VM and wait until its agent answers")
    .argument("<name...>", "VM names")
    .action(async (names: string[]) => {
      const interrupt = abortOnInterrupt();
      try {
        for (const name of names) {
          await manager().start(name, { signal: interrupt.signal });
          process.stdout.write(`${name}\n`);
        }
      } finally {
        interrupt.dispose();
      }
    });

  program
    .command("stop")
    .description("stop a VM gracefully (ACPI power button), killing it after --timeout")
    .argument("<name...>", "VM names")
    .option("-t, --timeout <seconds>", "seconds to wait before killing", "10")
    .action(async (names: string[], flags: { timeout: string }) => {
      const timeoutMs = parseIntFlag(flags.timeout, "--timeout", 0, 3600) * 1000;
      for (const name of names) {
        await manager().stop(name, { timeoutMs });
        process.stdout.write(`${name}\n`);
      }
    });

  for (const [verb, what] of [
    ["pause", "freeze a VM's vCPUs (memory stays allocated)"],
    ["resume", "continue a paused VM and set its clock"],
  ] as const) {
    program
      .command(verb)
      .description(what)
      .argument("<name...>", "VM names")
      .action(async (names: string[]) => {
        for (const name of names) {
          await manager()[verb](name);
          process.stdout.write(`${name}\n`);
        }
      });
  }

  program
    .command("clone")
    .description("copy a stopped VM (its root overlay and its own disks) under a new name")
    .argument("<source>", "a stopped VM")
    .argument("<target>", "the new VM's name")
    .action(async (source: string, target: string) => {
      const vm = await manager().clone(source, target);
      process.stdout.write(`${vm.name}\n`);
    });

  program
    .command("kill")
    .description("kill a VM immediately")
    .argument("<name...>", "VM names")
    .action(async (names: string[]) => {
      for (const name of names) {
        await manager().kill(name);
        process.stdout.write(`${name}\n`);
      }
    });

  program
    .command("rm")
    .description("remove VMs and everything they own")
    .argument("<name...>", "VM names")
    .option("-f, --force", "kill running VMs first")
    .action(async (names: string[], flags: { force?: boolean }) => {
      for (const name of names) {
        await manager().remove(name, { force: flags.force === true });
        process.stdout.write(`${name}\n`);
      }
    });

  program
    .command("ls")
    .alias("ps")
    .description("list VMs")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const vms = await manager().list();
      if (flags.json) return printJson(vms.map(summary));
      printTable(
        ["NAME", "STATE", "CPUS", "MEMORY", "ACCEL", "CREATED", "REASON"],
        vms.map((vm) => [
          vm.name,
          vm.state,
          String(vm.spec.cpus),
          formatSize(vm.spec.memory * 1024 * 1024),
          vm.accel?.accel ?? "-",
          age(vm.createdAt),
          vm.state === "failed" ? (vm.reason ?? "") : "",
        ]),
      );
    });

  program
    .command("stats")
    .description(
      "resource use of a running VM: vCPU time, memory (host and guest view), disk and network I/O",
    )
    .argument("<name>", "VM name")
    .option("--json", "print JSON")
    .action(async (name: string, flags: { json?: boolean }) => {
      const stats = await manager().stats(name);
      if (flags.json) return printJson(stats);
      const mem = stats.guestMemory;
      printTable(
        [
          "NAME",
          "STATE",
          "VCPU TIME",
          "VMM RSS",
          "CORRAL RSS",
          "GUEST MEM USED",
          "DISK R/W",
          "NET RX/TX",
        ],
        [
          [
            stats.name,
            stats.state,
            `${(stats.vmm.cpuMs / 1000).toFixed(1)}s`,
            formatSize(stats.vmm.rssBytes),
            formatSize(stats.overhead.rssBytes),
            mem === undefined
              ? "-"
              : `${formatSize(mem.usedBytes)} / ${formatSize(mem.totalBytes)}`,
            stats.disks.length === 0
              ? "-"
              : `${formatSize(stats.disks.reduce((n, d) => n + d.readBytes, 0))} / ${formatSize(stats.disks.reduce((n, d) => n + d.writtenBytes, 0))}`,
            stats.network.length === 0
              ? "-"
              : `${formatSize(stats.network.reduce((n, i) => n + i.rxBytes, 0))} / ${formatSize(stats.network.reduce((n, i) => n + i.txBytes, 0))}`,
          ],
        ],
      );
    });

  program
    .command("inspect")
    .description("show everything corral knows about a VM (JSON)")
    .argument("<name>", "VM name")
    .action(async (name: string) => {
      const vm = await manager().inspect(name);
      printJson({ ...vm, paths: vm.paths });
    });

  program
    .command("logs")
    .description("print a VM's serial console, or its egress decisions (--egress)")
    .argument("<name>", "VM name")
    .option("-f, --follow", "keep printing while the VM runs")
    .option("--egress", "the egress proxy's decisions (allowed / denied, with the reason)")
    .option("--json", "with --egress: one JSON object per line, close entries included")
    .action(async (name: string, flags: { follow?: boolean; egress?: boolean; json?: boolean }) => {
      const mgr = manager();
      const path = flags.egress === true ? mgr.egressLogPath(name) : mgr.serialLogPath(name);
      const write =
        flags.egress === true && flags.json !== true
          ? lineWriter(formatEgressLine)
          : (chunk: Buffer) => process.stdout.write(chunk);
      let offset = 0;
      for (;;) {
        offset = copyFrom(path, offset, write);
        if (!flags.follow) return;
        const vm = await mgr.inspect(name);
        if (!ACTIVE_STATES.includes(vm.state)) {
          copyFrom(path, offset, write);
          return;
        }
        await sleep(200);
      }
    });
}

/** Buffers chunks into whole lines for `format`; what it returns is printed. */
function lineWriter(format: (line: string) => string | undefined): (chunk: Buffer) => void {
  let pending = "";
  return (chunk) => {
    pending += chunk.toString("utf8");
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const out = format(line);
      if (out !== undefined) process.stdout.write(`${out}\n`);
    }
  };
}

/** `TIME ALLOW|DENY METHOD host:port -> address: reason`; close entries only in --json. */
function formatEgressLine(line: string): string | undefined {
  try {
    const e = JSON.parse(line) as Record<string, unknown>;
    if (e.event === "close") return undefined;
    const verdict = e.allowed === true ? "ALLOW" : "DENY ";
    const target = `${String(e.host)}:${String(e.port)}`;
    const address = typeof e.address === "string" ? ` -> ${e.address}` : "";
    const url = typeof e.url === "string" ? ` ${e.url}` : "";
    return `${String(e.time)} ${verdict} ${String(e.method)} ${target}${address}${url}: ${String(e.reason)}`;
  } catch {
    return undefined;
  }
}

/** Copies the log from `offset` through `write`; returns the new offset. */
function copyFrom(path: string, offset: number, write: (chunk: Buffer) => void): number {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return offset;
  }
  if (size < offset) offset = 0; // the log was truncated by a restart
  if (size === offset) return offset;
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(64 * 1024);
    while (offset < size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - offset), offset);
      if (n <= 0) break;
      write(Buffer.from(buf.subarray(0, n)));
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
  return offset;
}
