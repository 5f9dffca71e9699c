import { EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { runPartitionManagerJob } from "../../shared/partitions/job.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs partition-manager [options]

Keeps every configured table's RANGE partitions ahead of the clock: the current interval through
\`premake\` intervals ahead, whether or not data arrives; fills gaps between children; moves rows that
landed in the DEFAULT partition into the partition that now covers them. Children are built as
standalone tables and ATTACHed (SHARE UPDATE EXCLUSIVE on the parent), every DDL under lock_timeout
with retries, so ingestion is never blocked for longer than lock_timeout.

${COMMON_HELP}`;

export async function partitionManager(
  argv: readonly string[],
  { signal, log }: MainContext,
): Promise<ExitCode> {
  const { values } = parseCommandArgs("partition-manager", argv, COMMON_FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = buildConfig(values, process.env);
  const database = await openDatabase(config, "partition-manager", log);
  try {
    const result = await runPartitionManagerJob(database.db, config, log, signal);
    return result.exitCode;
  } finally {
    await database.close();
  }
}
