#!/usr/bin/env node
// telemetry-jobs <command> [options]: one CLI for every job. The jobs/<job>/main.ts entrypoints
// run the same commands.
import { runCommand, USAGE } from "./commands/index.ts";
import { EXIT_OK, EXIT_USAGE, runMain } from "./process.ts";

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || name === "--help" || name === "-h" || name === "help") {
  process.stdout.write(`${USAGE}\n`);
  process.exitCode = name === undefined ? EXIT_USAGE : EXIT_OK;
} else {
  runMain(name, rest, (ctx) => runCommand(name, rest, ctx));
}
