import { ConfigError, EXIT, type ExitCode } from "../../shared/config/errors.ts";
import { parseInstant } from "../../shared/config/load.ts";
import { runRollupJob } from "../../shared/rollups/job.ts";
import { shardFromEnv } from "../../shared/rollups/plan.ts";
import type { MainContext } from "../process.ts";
import { COMMON_FLAGS, COMMON_HELP, parseCommandArgs } from "./args.ts";
import { buildConfig, openDatabase } from "./environment.ts";

const HELP = `Usage: telemetry-jobs rollup-hourly [options] [--from ISO --to ISO]

Keeps each table's hourly rollups (policy block "rollup") equal to a GROUP BY over the raw rows,
for every final hour (an hour is final once it has ended). Each run recomputes, from raw rows,
the hours that became final since the last run and the final buckets touched by rows that became
visible since then (late rows, transactions that were still open), and saves the snapshot it saw.
It never waits for other transactions. The first run rebuilds history in batches of whole hours
(policy backfillBatchHours, batchPauseMs, timeBudgetMs); a killed or budget-limited rebuild resumes
at the next run.

  --from ISO --to ISO  rebuild these hours from raw rows (refused before the raw-data horizon)

Cloud Run: with CLOUD_RUN_TASK_COUNT > 1, task CLOUD_RUN_TASK_INDEX handles its own share of groups.

${COMMON_HELP}`;

const FLAGS = { ...COMMON_FLAGS, from: { type: "string" }, to: { type: "string" } } as const;

export async function rollupHourly(argv: readonly string[], { signal, log }: MainContext): Promise<ExitCode> {
  const { values } = parseCommandArgs("rollup-hourly", argv, FLAGS, false, HELP);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  if ((values.from === undefined) !== (values.to === undefined))
    throw new ConfigError("rollup-hourly: --from and --to go together (a rebuild of the hours between them)");
  const rebuild =
    values.from !== undefined && values.to !== undefined
      ? { from: parseInstant(values.from, "--from"), to: parseInstant(values.to, "--to") }
      : undefined;
  if (rebuild && !(rebuild.from < rebuild.to))
    throw new ConfigError("rollup-hourly: --from must be before --to");
  const shard = shardFromEnv(process.env);
  if (typeof shard === "string") throw new ConfigError(`rollup-hourly: ${shard}`);
  const config = buildConfig(values, process.env);
  const database = await openDatabase(config, "rollup-hourly", log);
  try {
    const result = await runRollupJob(database.db, config, log, signal, { shard, rebuild });
    return result.exitCode;
  } finally {
    await database.close();
  }
}
