import type { Command } from "commander";
import { daemonStatus, formatPortForward, runDaemon, stopDaemon } from "../../index.js";
import { parseIntFlag } from "../options.js";
import { printJson } from "../render.js";

export function registerDaemonCommands(program: Command): void {
  const daemon = program
    .command("daemon")
    .description("the per-user daemon that runs port forwards, egress proxies and switches");
  daemon
    .command("run")
    .description("run the daemon in the foreground (it is started on demand otherwise)")
    .option("--idle-exit <seconds>", "exit after this long with nothing to serve (0: never)", "0")
    .action(async (flags: { idleExit: string }) => {
      const idle = parseIntFlag(flags.idleExit, "--idle-exit", 0, 86_400);
      // runDaemon loads the daemon's HTTP server only now: other commands start without it.
      await runDaemon({ idleMs: idle * 1000, foreground: true });
      await new Promise(() => {});
    });
  daemon
    .command("status")
    .description("is it running, and what does it serve")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const status = await daemonStatus();
      if (flags.json) return printJson(status);
      if (!status.running) {
        process.stdout.write(`not running (socket ${status.socket})\n`);
        return;
      }
      process.stdout.write(
        `running, pid ${status.health?.pid}, since ${status.health?.startedAt}\n`,
      );
      for (const vm of status.vms) {
        const parts = [
          ...vm.forwards.map(formatPortForward),
          ...(vm.egress === null ? [] : [`egress (${vm.egress.rules.length} rules)`]),
          ...(vm.switch === null ? [] : [`switch ${vm.switch}`]),
        ];
        process.stdout.write(`  ${vm.name}: ${parts.join(", ")}\n`);
      }
    });
  daemon
    .command("stop")
    .description("stop the daemon (VMs keep running; their forwards and proxies stop)")
    .action(async () => {
      const stopped = await stopDaemon();
      process.stdout.write(stopped ? "stopped\n" : "not running\n");
    });
}
