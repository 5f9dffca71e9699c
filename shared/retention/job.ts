// The retention job: the runner with retention's table selection, checks and work.
import type { Kysely } from "kysely";
import type { Config } from "../config/load.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { inspectPartitionedTable, type RunResult, runJob } from "../run/runner.ts";
import { inspectPlainTable } from "./facts.ts";
import { manageRetention } from "./manage.ts";

export async function runRetentionJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
  options: { force: boolean },
): Promise<RunResult> {
  return await runJob({
    job: "retention",
    config,
    db,
    log,
    signal,
    appliesTo: (policy) => policy.retention !== undefined,
    inspect: (db, policy) =>
      policy.partitioned ? inspectPartitionedTable(db, policy) : inspectPlainTable(db, policy),
    processTable: (ctx) =>
      manageRetention(db, ctx, {
        now: config.options.now,
        dryRun: config.options.dryRun,
        force: options.force,
      }),
  });
}
