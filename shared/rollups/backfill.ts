// The rebuild of a rollup run: the pending range of the task's watermark, recomputed in batches of
// whole hours, each batch in one transaction with the watermark's progress, so a kill loses at most
// the batch in flight and the next run resumes. What the loop does next (a batch, stop, done) is
// decided by nextBackfillStep (decide.ts); this file runs it.
import type { Kysely } from "kysely";
import type { DB } from "../db/schema.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import { recomputeBuckets } from "./apply.ts";
import { backfillProgress, hoursIn, nextBackfillStep } from "./decide.ts";
import type { HourRange } from "./plan.ts";
import type { RollupContext, RollupTask } from "./source.ts";
import { loadSavedWatermark, type SavedWatermark, saveWatermark } from "./watermark.ts";

/** How often the rebuild logs its progress. */
const PROGRESS_EVERY_MS = 5_000;

export interface BackfillResult {
  batches: number;
  /** Stopped between batches because termination was requested. */
  interrupted: boolean;
  /** Rows of the rebuilt hours skipped because their group is NULL. */
  nullGroupRows: number;
}

/**
 * Recomputes the pending rebuild range in batches of whole hours, saving progress after each.
 * `horizon` is the run's raw-data horizon: before it, a batch keeps rollup rows it finds no raw
 * values for.
 */
export async function runBackfill(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  horizon: Date | null,
): Promise<BackfillResult> {
  const { log } = ctx;
  const { rollup } = task.source;
  const started = Date.now();
  let lastProgress = started;
  const done = { batches: 0, hours: 0, buckets: 0, samples: 0, nullGroupRows: 0 };
  const result = (interrupted: boolean): BackfillResult => ({
    batches: done.batches,
    interrupted,
    nullGroupRows: done.nullGroupRows,
  });
  for (;;) {
    const w = await loadSavedWatermark(db, rollup.target, task.shard);
    const next = nextBackfillStep(w, {
      batchHours: rollup.backfillBatchHours,
      horizon,
      aborted: ctx.signal.aborted,
      elapsedMs: Date.now() - started,
      budgetMs: rollup.timeBudgetMs,
    });
    switch (next.kind) {
      case "none":
        return result(false);
      case "complete":
        log.notice("rebuild complete", { hours: done.hours, buckets: done.buckets, samples: done.samples });
        await db
          .transaction()
          .execute((trx) =>
            saveWatermark(trx, rollup.target, task.shard, { ...w, backfillNext: null, backfillTo: null }),
          );
        return result(false);
      case "interrupted":
        log.warn("stopping the rebuild between batches: termination requested; the next run resumes", {
          next: w.backfillNext,
        });
        return result(true);
      case "out_of_time":
        log.warn("rebuild stopped at the time budget; the next run resumes", {
          next: w.backfillNext,
          to: w.backfillTo,
        });
        return result(false);
      case "batch":
        break;
    }
    const r = await runBatch(db, ctx, task, w, next);
    done.batches++;
    done.hours += hoursIn(next.batch);
    done.buckets += r.buckets;
    done.samples += r.samples;
    done.nullGroupRows += r.nullGroupRows;
    if (Date.now() - lastProgress > PROGRESS_EVERY_MS) {
      lastProgress = Date.now();
      log.info("rebuilding rollups", {
        ...backfillProgress({
          hoursDone: done.hours,
          hoursLeft: next.hoursLeftAfter,
          samples: done.samples,
          buckets: done.buckets,
          elapsedMs: Date.now() - started,
        }),
        next: next.batch.to,
      });
    }
    if (rollup.batchPauseMs > 0) await new Promise((r) => setTimeout(r, rollup.batchPauseMs));
  }
}

/** One batch: recomputed and its progress saved in one transaction, then recorded. */
async function runBatch(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  w: SavedWatermark,
  step: { batch: HourRange; keepExisting: boolean },
) {
  const { batch, keepExisting } = step;
  const target = task.source.rollup.target;
  const batchStarted = new Date();
  const result = await db.transaction().execute(async (trx) => {
    const r = await recomputeBuckets(trx, task, { kind: "hours", range: batch, keepExisting });
    await saveWatermark(trx, target, task.shard, { ...w, backfillNext: batch.to });
    return r;
  });
  await pauseAtFaultPoint("after-rollup-batch", ctx.log);
  await ctx.record({
    kind: "rollup_rebuild_batch",
    partition: target,
    from: batch.from,
    to: batch.to,
    rows: result.buckets,
    outcome: "ok",
    detail: { shard: task.shard, upserted: result.upserted, deleted: result.deleted },
    startedAt: batchStarted,
    finishedAt: new Date(),
  });
  return result;
}
