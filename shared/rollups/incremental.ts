// The incremental step of a rollup run, in one REPEATABLE READ transaction: recompute the hours that
// became final and the final buckets touched by newly visible rows or by committed updates and
// deletes, and save the snapshot the transaction saw with the new finalBefore. What it covers is
// decided by incrementalScope (decide.ts); this file runs it and logs it, as the first action of the
// run's plan (work.ts), and says what its audit row holds.
import { type Kysely, sql } from "kysely";
import type { DB } from "../db/schema.ts";
import type { Applied } from "../run/execute-plan.ts";
import { collectTouchedBuckets, type RecomputeResult, recomputeBuckets } from "./apply.ts";
import { type ChangeConsumption, consumeChanges } from "./change-records.ts";
import { hoursIn, incrementalScope } from "./decide.ts";
import type { RollupPlan } from "./plan.ts";
import type { RollupContext, RollupTask } from "./source.ts";
import { parseSnapshot, type SavedWatermark, saveWatermark } from "./watermark.ts";

export interface IncrementalStep {
  /** The snapshot saved (pg_snapshot text). */
  seen: string;
  touched: Awaited<ReturnType<typeof collectTouchedBuckets>>;
  changes: ChangeConsumption;
  fromTouched: RecomputeResult;
  fromHours: RecomputeResult;
  /** Rows skipped because their group is NULL, over the whole step. */
  nullGroupRows: number;
}

const iso = (d: Date) => d.toISOString();
/** work_mem for the newly final hours' recompute (see incrementalTransaction). */
const NEWLY_FINAL_WORK_MEM = "64MB";
const NOTHING: RecomputeResult = { buckets: 0, samples: 0, upserted: 0, deleted: 0, nullGroupRows: 0 };

/** Runs the step and logs it; returns the step and what the plan executor audits of it. */
export async function applyIncremental(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  start: { saved: SavedWatermark; plan: RollupPlan; inherited: boolean },
): Promise<{ step: IncrementalStep; applied: Applied }> {
  const started = Date.now();
  const step = await incrementalTransaction(db, task, start);
  const durationMs = Date.now() - started;
  const buckets = reportIncremental(ctx, start.plan, step, durationMs);
  return {
    step,
    applied: {
      rows: step.touched.rows,
      outcome: "ok",
      detail: {
        shard: task.shard,
        buckets,
        changedBuckets: step.changes.buckets,
        seen: step.seen,
        durationMs,
      },
      logFields: { buckets },
    },
  };
}

async function incrementalTransaction(
  db: Kysely<DB>,
  task: RollupTask,
  { saved, plan, inherited }: { saved: SavedWatermark; plan: RollupPlan; inherited: boolean },
): Promise<IncrementalStep> {
  const target = task.source.rollup.target;
  return await db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      // First statement: fixes the transaction's snapshot, which is the one we save.
      const snap = await sql<{ seen: string }>`SELECT pg_current_snapshot()::text AS seen`.execute(trx);
      const seen = snap.rows[0]!.seen;
      const scope = incrementalScope(saved, plan);
      const touched = await collectTouchedBuckets(trx, task, saved.seen, scope.ranges, plan.horizon);
      // Updated and deleted rows: their buckets join the ones recomputed one by one.
      const changes = await consumeChanges(trx, task.source, task.shard, {
        ranges: scope.ranges,
        finalBefore: plan.finalBefore,
        horizon: plan.horizon,
        pending: scope.pending,
      });
      const fromTouched = await recomputeBuckets(trx, task, { kind: "touched" });
      // The newly final hours are most of the step's rows. The planner cannot tell how few
      // (group, key, hour) groups they make (it assumes one per row), so within the default
      // work_mem it sorts every (row, key) pair, spilling to disk, instead of hashing the groups.
      // A hash that outgrows this memory spills too; the setting ends with the transaction. Only
      // ever raised: an operator who gave the job's role or database more keeps it.
      if (scope.newlyFinal)
        await sql`
          SELECT pg_catalog.set_config('work_mem', ${NEWLY_FINAL_WORK_MEM}, true)
           WHERE pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem'))
                 < pg_catalog.pg_size_bytes(${NEWLY_FINAL_WORK_MEM})`.execute(trx);
      const fromHours = scope.newlyFinal
        ? await recomputeBuckets(trx, task, {
            kind: "hours",
            range: scope.newlyFinal,
            keepExisting: !inherited,
          })
        : NOTHING;
      await saveWatermark(trx, target, task.shard, {
        seen,
        finalBefore: plan.finalBefore,
        backfillNext: saved.backfillNext,
        backfillTo: saved.backfillTo,
      });
      const nullGroupRows = touched.nullGroupRows + fromTouched.nullGroupRows + fromHours.nullGroupRows;
      return { seen, touched, changes, fromTouched, fromHours, nullGroupRows };
    });
}

/** The step's log lines; returns how many metric buckets it recomputed. */
function reportIncremental(
  ctx: RollupContext,
  plan: RollupPlan,
  step: IncrementalStep,
  durationMs: number,
): number {
  const { log } = ctx;
  const horizon = plan.horizon ? iso(plan.horizon) : "";
  if (step.touched.skippedBeforeHorizon > 0)
    log.warn(
      `${step.touched.skippedBeforeHorizon} new rows belong to hours before the raw-data horizon ${horizon}; their rollups are left as they are (raw rows there may already be gone)`,
      { rows: step.touched.skippedBeforeHorizon },
    );
  if (step.changes.beforeHorizon > 0)
    log.info(
      `${step.changes.beforeHorizon} (group, hour) records of updated or deleted rows belong to hours before the raw-data horizon ${horizon}; their rollups are left as they are`,
      { records: step.changes.beforeHorizon },
    );
  const buckets = step.fromTouched.buckets + step.fromHours.buckets;
  const upserted = step.fromTouched.upserted + step.fromHours.upserted;
  const deleted = step.fromTouched.deleted + step.fromHours.deleted;
  log.notice(
    `incremental: ${step.touched.rows} new rows outside the newly final hours touched ${step.touched.buckets} (group, hour) buckets, updated or deleted rows ${step.changes.buckets}; ${buckets} metric buckets recomputed, ${upserted} written, ${deleted} removed`,
    {
      lateRows: step.touched.rows,
      touchedBuckets: step.touched.buckets,
      changedBuckets: step.changes.buckets,
      changeRecords: step.changes.records,
      newlyFinalHours: plan.newlyFinal ? hoursIn(plan.newlyFinal) : 0,
      upserted,
      durationMs,
      unsettledTransactions: parseSnapshot(step.seen).xip.length,
    },
  );
  return buckets;
}
