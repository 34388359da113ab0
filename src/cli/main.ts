#!/usr/bin/env node
/** The corral CLI: parse flags, call the library, render. No logic of its own. */
import { Command } from "commander";
import { registerDaemonCommands } from "./commands/daemon.js";
import { registerHostCommands } from "./commands/host.js";
import { registerImageCommands } from "./commands/image.js";
import { registerLifecycleCommands } from "./commands/lifecycle.js";
import { registerPoolCommands } from "./commands/pool.js";
import { registerRunCommands } from "./commands/run.js";
import { registerSnapshotCommands } from "./commands/snapshot.js";
import { exitCodeFor, renderError } from "./render.js";

const program = new Command();
program
  .name("corral")
  .description("Linux microVMs as sandboxes: docker-run ergonomics, VM isolation")
  .version("0.1.0")
  .option("--debug", "show stack traces and error codes")
  .enablePositionalOptions()
  .showHelpAfterError('(run "corral --help" for usage)');

registerRunCommands(program);
registerLifecycleCommands(program);
registerHostCommands(program);
registerImageCommands(program);
registerDaemonCommands(program);
registerSnapshotCommands(program);
registerPoolCommands(program);

// --debug works anywhere on the line (before `--`), not only before the subcommand.
const dashDash = process.argv.indexOf("--");
const flagArea = dashDash < 0 ? process.argv : process.argv.slice(0, dashDash);
const debug = flagArea.includes("--debug");
const argv = debug
  ? process.argv.filter((arg, i) => arg !== "--debug" || (dashDash >= 0 && i > dashDash))
  : process.argv;
program.exitOverride((err) => {
  // commander already printed its message; map usage errors to exit code 2.
  process.exit(err.exitCode === 0 ? 0 : 2);
});
try {
  await program.parseAsync(debug ? [...argv.slice(0, 2), "--debug", ...argv.slice(2)] : argv);
} catch (err) {
  renderError(err, debug);
  process.exitCode = exitCodeFor(err);
}
