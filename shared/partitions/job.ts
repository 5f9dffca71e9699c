// The partition-manager job: the runner with partition-manager's table selection and work.
import type { Kysely } from "kysely";
import type { Config } from "../config/load.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { type RunResult, runJob } from "../run/runner.ts";
import { managePartitions } from "./manage.ts";

export async function runPartitionManagerJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
): Promise<RunResult> {
  return await runJob({
    job: "partition-manager",
    config,
    db,
    log,
    signal,
    appliesTo: (policy) => policy.partitioned,
    processTable: (ctx) =>
      managePartitions(db, ctx, { now: config.options.now, dryRun: config.options.dryRun }),
  });
}
