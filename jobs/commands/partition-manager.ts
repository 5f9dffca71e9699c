import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import type { Config } from "../../shared/config/load.ts";
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

Options:
  --max-rescue-rows N
                     for this run, the --table tables' maxRescueRows: move up to N rows out of
                     DEFAULT per new partition (a refused rescue, done deliberately at a quiet time:
                     readers and writers of the table wait for the whole move). Needs --table.

${COMMON_HELP}`;

const FLAGS = { ...COMMON_FLAGS, "max-rescue-rows": { type: "string" } } as const;

export async function partitionManager(
  argv: readonly string[],
  { signal, log }: MainContext,
): Promise<ExitCode> {
  const { values } = parseCommandArgs("partition-manager", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const config = withRescueBound(buildConfig(values, process.env), values["max-rescue-rows"]);
  const database = await openDatabase(config, "partition-manager", log);
  try {
    const result = await runPartitionManagerJob(database.db, config, log, signal);
    return result.exitCode;
  } finally {
    await database.close();
  }
}

/**
 * The config with the --table tables' maxRescueRows set to `raw` (the deliberate rescue a refused
 * run's finding names), or unchanged without the flag. Only named tables: a bound raised for every
 * table of a policy file would let the next table's long move through unasked.
 */
function withRescueBound(config: Config, raw: string | undefined): Config {
  if (raw === undefined) return config;
  const bound = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(bound))
    throw new ConfigError(`--max-rescue-rows must be a whole number of rows, e.g. 120000 (got "${raw}")`);
  const tables = config.options.tables;
  if (tables === undefined)
    throw new ConfigError(
      "--max-rescue-rows needs --table: name the table whose DEFAULT rows this run may move",
    );
  return {
    ...config,
    policies: config.policies.map((p) => (tables.includes(p.table) ? { ...p, maxRescueRows: bound } : p)),
  };
}
