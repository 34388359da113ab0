import type { Command } from "commander";
import { type DoctorReport, doctor, setup } from "../../index.js";
import { printJson, progressRenderer } from "../render.js";

export function registerHostCommands(program: Command): void {
  program
    .command("setup")
    .description(
      "install missing host packages (root), fetch what each backend needs, build the default image",
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
        for (const c of result.components) {
          process.stdout.write(`${c.name} ${c.version}: ${c.path}\n`);
        }
        process.stdout.write(
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
        for (const backend of report.backends) {
          process.stdout.write(`backend ${backend.name}: ${backend.detail}\n`);
          if (backend.features !== undefined) {
            process.stdout.write(`        ${featureSummary(backend.features)}\n`);
          }
        }
        process.stdout.write(
          `accelerator: ${report.accelerator.accel} (${report.accelerator.reason})\n`,
        );
        process.stdout.write(`cache: ${report.dirs.cache}\nstate: ${report.dirs.state}\n`);
      }
      if (!report.ok) process.exitCode = 1;
    });
}

/** One line of what a backend can do, for `corral doctor`. */
function featureSummary(f: NonNullable<DoctorReport["backends"][number]["features"]>): string {
  const yes = (on: boolean, what: string) => (on ? [what] : []);
  return [
    `disks ${f.diskFormats.join("/")}`,
    `network ${f.networks.join("/")}`,
    ...(f.sharedFolders.length > 0 ? [`shares ${f.sharedFolders.join("/")}`] : []),
    `firmware ${f.firmware.join("/")}`,
    ...yes(f.pause, "pause"),
    ...yes(f.snapshots !== false, "snapshots"),
    ...yes(f.balloon, "balloon"),
    ...yes(f.counters, "counters"),
  ].join(", ");
}
