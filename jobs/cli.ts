#!/usr/bin/env node
// telemetry-jobs <command> [options]: one CLI for every job. The jobs/<job>/main.ts entrypoints
// run the same commands.
import { EXIT } from "../shared/config/errors.ts";
import { runCommand, USAGE } from "./commands/index.ts";
import { runMain } from "./process.ts";

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || name === "--help" || name === "-h" || name === "help") {
  process.stdout.write(`${USAGE}\n`);
  process.exitCode = name === undefined ? EXIT.usage : EXIT.ok;
} else {
  runMain(name, rest, (ctx) => runCommand(name, rest, ctx));
}
