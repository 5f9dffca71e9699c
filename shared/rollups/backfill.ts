// The rebuild of a rollup run: the pending range of the task's watermark, recomputed in batches of
// whole hours, each batch in one transaction with the watermark's progress, so a kill loses at most
// the batch in flight and the next run resumes. The batches are actions of the run's plan
// (planRollupWork, decide.ts) carried out by the plan executor (work.ts); this file applies one
// batch, and says at the end whether the rebuild is complete or where it stopped.
import type { Kysely } from "kysely";
import type { DB } from "../db/schema.ts";
import type { Applied } from "../run/execute-plan.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { recomputeBuckets } from "./apply.ts";
import { backfillProgress, hoursIn, nextBackfillStep, type RollupAction } from "./decide.ts";
import type { RollupContext, RollupTask } from "./source.ts";
import { loadSavedWatermark, saveWatermark } from "./watermark.ts";

/** How often the rebuild logs its progress. */
const PROGRESS_EVERY_MS = 5_000;

/** What the run's batches have done so far (for the progress line and the health). */
export interface RebuildTotals {
  batches: number;
  hours: number;
  buckets: number;
  samples: number;
  /** Rows of the rebuilt hours skipped because their group is NULL. */
  nullGroupRows: number;
  /** When the rebuild began: its time budget counts from here. */
  started: number;
  lastProgress: number;
}

export function rebuildTotals(started: number): RebuildTotals {
  return { batches: 0, hours: 0, buckets: 0, samples: 0, nullGroupRows: 0, started, lastProgress: started };
}

/**
 * One batch: recomputed and its progress saved in one transaction. Batches after the first wait
 * rollup.batchPauseMs first (other sessions get the disk between them).
 */
export async function applyRebuildBatch(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  action: Extract<RollupAction, { kind: "rollup_rebuild_batch" }>,
  totals: RebuildTotals,
): Promise<Applied> {
  const { rollup } = task.source;
  const { batch, keepExisting } = action;
  if (totals.batches > 0 && rollup.batchPauseMs > 0)
    await new Promise((r) => setTimeout(r, rollup.batchPauseMs));
  const w = await loadSavedWatermark(db, rollup.target, task.shard);
  const result = await db.transaction().execute(async (trx) => {
    const r = await recomputeBuckets(trx, task, { kind: "hours", range: batch, keepExisting });
    await saveWatermark(trx, rollup.target, task.shard, { ...w, backfillNext: batch.to });
    return r;
  });
  await pauseAtFaultPoint("after-rollup-batch", ctx.log);
  totals.batches++;
  totals.hours += hoursIn(batch);
  totals.buckets += result.buckets;
  totals.samples += result.samples;
  totals.nullGroupRows += result.nullGroupRows;
  if (Date.now() - totals.lastProgress > PROGRESS_EVERY_MS) {
    totals.lastProgress = Date.now();
    ctx.log.info("rebuilding rollups", {
      ...backfillProgress({
        hoursDone: totals.hours,
        hoursLeft: action.hoursLeftAfter,
        samples: totals.samples,
        buckets: totals.buckets,
        elapsedMs: Date.now() - totals.started,
      }),
      next: batch.to,
    });
  }
  return {
    rows: result.buckets,
    outcome: "ok",
    detail: { shard: task.shard, upserted: result.upserted, deleted: result.deleted },
    logFields: { buckets: result.buckets },
  };
}

/**
 * After the run's plan: a rebuild whose batches are all done is cleared from the watermark; one
 * stopped by termination or by the time budget says so, and the next run resumes it.
 */
export async function finishRebuild(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  how: "done" | "interrupted" | "out_of_time",
  totals: RebuildTotals,
): Promise<void> {
  const { log } = ctx;
  const { rollup } = task.source;
  const w = await loadSavedWatermark(db, rollup.target, task.shard);
  if (how === "interrupted") {
    log.warn("stopping the rebuild between batches: termination requested; the next run resumes", {
      next: w.backfillNext,
    });
    return;
  }
  if (how === "out_of_time") {
    log.warn("rebuild stopped at the time budget; the next run resumes", {
      next: w.backfillNext,
      to: w.backfillTo,
    });
    return;
  }
  const next = nextBackfillStep(w, {
    batchHours: rollup.backfillBatchHours,
    horizon: null,
    aborted: false,
    elapsedMs: 0,
    budgetMs: rollup.timeBudgetMs,
  });
  if (next.kind !== "complete") return;
  log.notice("rebuild complete", { hours: totals.hours, buckets: totals.buckets, samples: totals.samples });
  await db
    .transaction()
    .execute((trx) =>
      saveWatermark(trx, rollup.target, task.shard, { ...w, backfillNext: null, backfillTo: null }),
    );
}
