// The rollup-hourly job: the runner with rollup's table selection, checks and work.
import type { Kysely } from "kysely";
import { adoptUnderLocks } from "../adopt/adopt.ts";
import type { Config } from "../config/load.ts";
import type { TablePolicy } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { type RunResult, runJob, type TableReport } from "../run/runner.ts";
import type { ChangeTracking } from "./change-tracking.ts";
import { groupMayBeNull, inspectRollupSourceFacts } from "./inspect.ts";
import { manageRollup } from "./manage.ts";
import type { HourRange, ShardSpec } from "./plan.ts";
import { isRollupSource, type RollupContext, rollupContext } from "./source.ts";

export async function runRollupJob(
  db: Kysely<DB>,
  config: Config,
  log: Logger,
  signal: AbortSignal,
  options: { shard: ShardSpec; rebuild?: HourRange | undefined },
): Promise<RunResult> {
  // What the check of each source read about its group column, kept for this run's work on it.
  const nullable = new Map<TablePolicy, boolean>();
  return await runJob({
    job: "rollup-hourly",
    config,
    db,
    log,
    signal,
    lockScope: `shard ${options.shard.index}/${options.shard.count}`,
    appliesTo: isRollupSource,
    inspect: async (db, policy) => {
      const facts = await inspectRollupSourceFacts(db, policy);
      if (facts.groupMayBeNull !== undefined) nullable.set(policy, facts.groupMayBeNull);
      return facts.problem;
    },
    processTable: async (tableCtx) => {
      const ctx = rollupContext(tableCtx);
      const adopted = await adoptFirst(db, ctx, config);
      if ("stop" in adopted) return adopted.stop;
      return await manageRollup(db, ctx, {
        changeTracking: adopted.changeTracking,
        now: config.options.now,
        dryRun: config.options.dryRun,
        shard: options.shard,
        rebuild: options.rebuild,
        // A source the check did not read (never in a run) is read now.
        groupMayBeNull: nullable.get(tableCtx.policy) ?? (await groupMayBeNull(db, ctx.policy)),
      });
    },
  });
}

/**
 * rollup-hourly's first step: adopt the source (shared/adopt/adopt.ts) unless it is adopted already,
 * reading its catalog once, under the adoption's own advisory lock (an `adopt` command or another shard's task may be at it).
 * `stop` is the table's report when the run cannot go on to the rollups: adoption refused,
 * incomplete, busy elsewhere, or planned only (a dry run, which cannot count new rows without
 * ingest_xid); otherwise the rollups go on, with what adoption found of the change triggers.
 */
async function adoptFirst(
  db: Kysely<DB>,
  ctx: RollupContext,
  config: Config,
): Promise<{ stop: TableReport } | { changeTracking: ChangeTracking | undefined }> {
  const dryRun = config.options.dryRun;
  const { ready, locked } = await adoptUnderLocks(db, ctx, {
    dryRun,
    policies: config.policies,
    ownKey: true,
  });
  if (!locked.acquired) {
    // Another shard's task checks the same table at the same time (or an `adopt` is running, or
    // partition-manager or retention is at work on a table adoption must change): go on if what
    // the rollups need is there, else leave this table to the next run.
    if (ready) return { changeTracking: undefined };
    ctx.log.notice(
      `${locked.busy?.startsWith("adopt:") ? "another run is adopting this table" : "partition-manager or retention is working on this table, which adoption must change"}; its rollups wait for the next run`,
      { table: ctx.policy.table },
    );
    return { stop: { status: "ok", actions: {} } };
  }
  const outcome = locked.value;
  if (outcome.refusal)
    return { stop: { status: "refused", actions: outcome.actions, error: outcome.refusal } };
  if (dryRun && !outcome.complete) {
    ctx.log.info("the rollups start once the table is adopted (the steps above); nothing more to plan", {
      table: ctx.policy.table,
    });
    return { stop: { status: "ok", actions: { ...outcome.actions } } };
  }
  if (!outcome.complete)
    return {
      stop: {
        status: ctx.signal.aborted ? "interrupted" : "failed",
        actions: outcome.actions,
        error: "adoption is not complete (see the messages above); the next run goes on with it",
      },
    };
  return { changeTracking: outcome.changeTracking };
}
