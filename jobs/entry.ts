// What every Cloud Run entrypoint (jobs/<job>/main.ts, bundled as dist/<job>.mjs) does: --version
// (anywhere on the line) prints the product's version and loads nothing else; any other command line runs the job's
// command, whose code is imported only then.
import pkg from "../package.json" with { type: "json" };

/** package.json is inlined into each bundle at build time: no file to find at run time. */
export const VERSION_LINE = `telemetry-jobs ${pkg.version}\n`;

export function isVersionFlag(arg: string | undefined): boolean {
  return arg === "--version" || arg === "-V";
}

export async function runEntry(job: string, argv: readonly string[]): Promise<void> {
  // As with the CLI (`telemetry-jobs --version --anything`), --version answers whatever else is given.
  if (argv.some(isVersionFlag)) {
    process.stdout.write(VERSION_LINE);
    return;
  }
  const [{ runCommand }, { runMain }] = await Promise.all([
    import("./commands/index.ts"),
    import("./process.ts"),
  ]);
  runMain(job, argv, (ctx) => runCommand(job, argv, ctx));
}
