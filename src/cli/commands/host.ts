import type { Command } from "commander";
import { doctor, setup } from "../../index.js";
import { printJson, progressRenderer } from "../render.js";

export function registerHostCommands(program: Command): void {
  program
    .command("setup")
    .description(
      "install missing host packages (root), fetch vhost-device-vsock, build the default image",
    )
    .option("--refresh", "re-resolve packages from the archive even when cached")
    .option("--dev", "also install what corral's own test suite needs (docker-registry, openssl)")
    .option("--json", "print the result as JSON")
    .option("-q, --quiet", "no progress output")
    .action(
      async (flags: { refresh?: boolean; dev?: boolean; json?: boolean; quiet?: boolean }) => {
        const result = await setup({
          refresh: flags.refresh === true,
          dev: flags.dev === true,
          onProgress: progressRenderer(flags.quiet !== true),
        });
        if (flags.json) return printJson(result);
        if (result.installedPackages.length > 0) {
          process.stdout.write(`installed: ${result.installedPackages.join(" ")}\n`);
        }
        process.stdout.write(
          `vhost-device-vsock ${result.vhostDeviceVsock.version}: ${result.vhostDeviceVsock.path}\n` +
            `image ${result.image.name} ${result.image.version} (${result.image.digest.slice(0, 19)})\n` +
            "ready: try `corral run -- uname -a`\n",
        );
      },
    );

  program
    .command("doctor")
    .description("check every dependency and show which accelerator would be used and why")
    .option("--json", "print JSON")
    .action((flags: { json?: boolean }) => {
      const report = doctor();
      if (flags.json) printJson(report);
      else {
        for (const check of report.checks) {
          const status = check.ok ? "ok     " : check.optional ? "absent " : "MISSING";
          process.stdout.write(`${status} ${check.name}: ${check.detail}\n`);
          if (check.fix !== undefined) process.stdout.write(`        fix: ${check.fix}\n`);
        }
        process.stdout.write(
          `accelerator: ${report.accelerator.accel} (${report.accelerator.reason})\n`,
        );
        process.stdout.write(`cache: ${report.dirs.cache}\nstate: ${report.dirs.state}\n`);
      }
      if (!report.ok) process.exitCode = 1;
    });
}
