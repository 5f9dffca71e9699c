// The command table shared by the telemetry-jobs CLI and the per-job entrypoints.
import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import type { MainContext } from "../process.ts";
import { adopt } from "./adopt.ts";
import { holds } from "./holds.ts";
import { migrate } from "./migrate.ts";
import { partitionManager } from "./partition-manager.ts";
import { retention } from "./retention.ts";
import { rollupHourly } from "./rollup-hourly.ts";
import { status } from "./status.ts";

type Command = (argv: readonly string[], ctx: MainContext) => Promise<ExitCode>;

const COMMANDS: Record<string, { run: Command; summary: string }> = {
  "partition-manager": {
    run: partitionManager,
    summary: "create partitions ahead of time, fill gaps, rescue DEFAULT rows",
  },
  retention: { run: retention, summary: "drop/detach/archive expired partitions; batched deletes elsewhere" },
  "rollup-hourly": {
    run: rollupHourly,
    summary: "hourly rollups: incremental, late data included; --from/--to rebuilds",
  },
  adopt: {
    run: adopt,
    summary: "prepare the policy's tables for rollups online (target, ingest_xid, index, triggers)",
  },
  migrate: {
    run: migrate,
    summary: "schema migrations: up | down | status; convert a live table to partitioned",
  },
  status: { run: status, summary: "health of every managed table (OK / WARN / CRIT); exit 1 on CRIT" },
  hold: {
    run: (argv, ctx) => holds("hold", argv, ctx),
    summary: "keep a partition past its retention cutoff",
  },
  unhold: { run: (argv, ctx) => holds("unhold", argv, ctx), summary: "release a hold" },
  holds: { run: (argv, ctx) => holds("holds", argv, ctx), summary: "list holds" },
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
