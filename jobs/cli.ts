#!/usr/bin/env node
// telemetry-jobs <command> [options]: one CLI for every job. The jobs/<job>/main.ts entrypoints
// run the same commands. --version and --help load nothing but what they print.
import { isVersionFlag, VERSION_LINE } from "./entry.ts";

const [name, ...rest] = process.argv.slice(2);
if (isVersionFlag(name) || name === "version") {
  process.stdout.write(VERSION_LINE);
} else {
  const { USAGE } = await import("./commands/index.ts");
  const usage = `${USAGE}\nRun \`telemetry-jobs --version\` for the version.\n`;
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage);
  } else if (name === undefined) {
    // A usage error: the help goes to stderr, and a script sees exit 2.
    process.stderr.write(`telemetry-jobs: no command given\n\n${usage}`);
    process.exitCode = 2;
  } else {
    const [{ runCommand }, { runMain }] = await Promise.all([
      import("./commands/index.ts"),
      import("./process.ts"),
    ]);
    runMain(name, rest, (ctx) => runCommand(name, rest, ctx));
  }
}
