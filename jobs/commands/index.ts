// The command table shared by the telemetry-jobs CLI and the per-job entrypoints. Each command's
// module is imported only when that command runs: `telemetry-jobs --help` and a job's entrypoint
// load no other command's code (nor the database and policy libraries it brings).
import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import type { MainContext } from "../process.ts";

type Command = (argv: readonly string[], ctx: MainContext) => Promise<ExitCode>;

const COMMANDS: Record<string, { run: Command; summary: string }> = {
  "partition-manager": {
    run: async (argv, ctx) => (await import("./partition-manager.ts")).partitionManager(argv, ctx),
    summary: "create partitions ahead of time, fill gaps, rescue DEFAULT rows",
  },
  retention: {
    run: async (argv, ctx) => (await import("./retention.ts")).retention(argv, ctx),
    summary: "drop/detach/archive expired partitions; batched deletes elsewhere",
  },
  "rollup-hourly": {
    run: async (argv, ctx) => (await import("./rollup-hourly.ts")).rollupHourly(argv, ctx),
    summary: "hourly rollups: incremental, late data included; --from/--to rebuilds",
  },
  adopt: {
    run: async (argv, ctx) => (await import("./adopt.ts")).adopt(argv, ctx),
    summary: "prepare the policy's tables for rollups online (target, ingest_xid, index, triggers)",
  },
  migrate: {
    run: async (argv, ctx) => (await import("./migrate.ts")).migrate(argv, ctx),
    summary: "schema migrations: up | down | status; convert a live table to partitioned",
  },
  status: {
    run: async (argv, ctx) => (await import("./status.ts")).status(argv, ctx),
    summary: "health of every managed table (OK / WARN / CRIT); exit 1 on CRIT, 3 if it could not check",
  },
  restore: {
    run: async (argv, ctx) => (await import("./restore.ts")).restore(argv, ctx),
    summary: "bring a partition exported to the cold tier back, verified, as a live partition",
  },
  hold: {
    run: async (argv, ctx) => (await import("./holds.ts")).holds("hold", argv, ctx),
    summary: "keep a partition past its retention cutoff",
  },
  unhold: {
    run: async (argv, ctx) => (await import("./holds.ts")).holds("unhold", argv, ctx),
    summary: "release a hold",
  },
  holds: {
    run: async (argv, ctx) => (await import("./holds.ts")).holds("holds", argv, ctx),
    summary: "list holds",
  },
};

export const USAGE = `Usage: telemetry-jobs <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(18)} ${c.summary}`)
  .join("\n")}

Run \`telemetry-jobs <command> --help\` for a command's options.`;

export async function runCommand(name: string, argv: readonly string[], ctx: MainContext): Promise<ExitCode> {
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`telemetry-jobs: unknown command "${name}"\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  return await command.run(argv, ctx);
}
