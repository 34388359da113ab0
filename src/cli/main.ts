#!/usr/bin/env node
/** The corral CLI: parse flags, call the library, render. No logic of its own. */
import { Command } from "commander";
import { registerHostCommands } from "./commands/host.js";
import { registerLifecycleCommands } from "./commands/lifecycle.js";
import { registerRunCommands } from "./commands/run.js";
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

const debug = process.argv.includes("--debug");
program.exitOverride((err) => {
  // commander already printed its message; map usage errors to exit code 2.
  process.exit(err.exitCode === 0 ? 0 : 2);
});
try {
  await program.parseAsync(process.argv);
} catch (err) {
  renderError(err, debug);
  process.exitCode = exitCodeFor(err);
}
