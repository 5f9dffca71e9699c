// rollup-hourly's work for one source table (one shard of it): make sure the source records its
// UPDATEs and DELETEs (change triggers), plan from the saved watermark, then (1) the incremental
// step in one REPEATABLE READ transaction: recompute the hours that became final and the final
// buckets touched by newly visible rows or by committed updates and deletes, save the snapshot;
// (2) the rebuild of history, in batches of whole hours, each its own transaction, within the
// time budget.
import { type Kysely, sql } from "kysely";
import { parseDuration, subtractDuration } from "../config/duration.ts";
import { policyTable } from "../config/policy.ts";
import { columnSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { pauseAtFaultPoint } from "../run/fault-points.ts";
import type { TableContext, TableReport } from "../run/runner.ts";
import {
  collectTouchedBuckets,
  dropObsoleteLayouts,
  inheritedStart,
  loadWatermark,
  parseSnapshot,
  recomputeBuckets,
  saveWatermark,
} from "./apply.ts";
import { consumeChanges, ensureChangeTracking, pendingChangeBuckets } from "./changes.ts";
import {
  ceilHour,
  HOUR_MS,
  type HourRange,
  nextBackfillBatch,
  planRollup,
  type ShardSpec,
  touchedScanRanges,
} from "./plan.ts";

export interface RollupOptions {
  now: Date;
  dryRun: boolean;
  shard: ShardSpec;
  rebuild?: HourRange | undefined;
}

const iso = (d: Date) => d.toISOString();

export async function manageRollup(
  db: Kysely<DB>,
  ctx: TableContext,
  options: RollupOptions,
): Promise<TableReport> {
  const { policy, log } = ctx;
  const rollup = policy.rollup!;
  const { shard } = options;
  const target = rollup.target;
  const tracking = await ensureChangeTracking(db, ctx, options.dryRun);
  let watermark = await loadWatermark(db, target, shard);
  let inherited = false;
  if (!watermark) {
    watermark = await inheritedStart(db, target, shard);
    inherited = watermark !== undefined;
  }
  // A first run takes its snapshot and the earliest row in one REPEATABLE READ transaction: every
  // row visible in the saved snapshot is then either in the rebuild range or in an open hour, and
  // every later row is "new" to the next run (read separately, a row committed in between was lost).
  const first = watermark ? undefined : await firstSnapshot(db, policy);
  const earliest = first?.earliest ?? null;
  const plan = planRollup({
    now: options.now,
    watermark,
    earliestRow: earliest,
    rebuild: options.rebuild,
    rawKeep: policy.retention ? parseDuration(policy.retention.keep) : undefined,
    maxNewlyFinalHours: rollup.backfillBatchHours,
  });
  if (plan.refusals.length > 0) {
    for (const r of plan.refusals) log.error(r, { refused: true });
    return { status: "refused", actions: {}, error: plan.refusals.join("; ") };
  }
  log.info(
    watermark
      ? `hours before ${iso(plan.finalBefore)} are final; shard ${shard.index + 1}/${shard.count}${inherited ? " (first run of this task layout: starting from the older layout's state)" : ""}`
      : `first run for ${target} (shard ${shard.index + 1}/${shard.count})`,
    {
      target,
      newlyFinal: plan.newlyFinal && { from: plan.newlyFinal.from, to: plan.newlyFinal.to },
      horizon: plan.horizon,
      rebuild: plan.startBackfill && { from: plan.startBackfill.from, to: plan.startBackfill.to },
    },
  );
  const counts: Record<string, number> = {};

  if (options.dryRun) {
    const pending = await countNewRows(db, policy, watermark?.seen);
    const changed = await pendingChangeBuckets(db, policy);
    log.info(
      `would recompute ${plan.newlyFinal ? `${(plan.newlyFinal.to.getTime() - plan.newlyFinal.from.getTime()) / HOUR_MS} newly final hours and ` : ""}the buckets of ${pending} newly visible rows and of ${changed} (group, hour) buckets with updated or deleted rows${plan.startBackfill ? `, then rebuild ${iso(plan.startBackfill.from)} .. ${iso(plan.startBackfill.to)}` : ""}`,
      { newRows: pending, changedBuckets: changed },
    );
    return {
      status: "ok",
      actions: { incremental: 1, ...(plan.startBackfill ? { rebuild: 1 } : {}) },
      health: {},
    };
  }

  // 0. A first run saves its starting point at once: the rebuild below then resumes after a kill.
  if (!watermark || inherited || plan.startBackfill) {
    // A rebuild asked for while another is pending covers both: dropping the pending one would leave
    // its hours never rolled up (their rows are already in the saved snapshot, never "new" again).
    const pending =
      watermark?.backfillNext && watermark.backfillTo && watermark.backfillNext < watermark.backfillTo
        ? { from: watermark.backfillNext, to: watermark.backfillTo }
        : null;
    const range =
      plan.startBackfill && pending
        ? {
            from: plan.startBackfill.from < pending.from ? plan.startBackfill.from : pending.from,
            to: plan.startBackfill.to > pending.to ? plan.startBackfill.to : pending.to,
          }
        : (plan.startBackfill ?? pending);
    await db.transaction().execute(async (trx) => {
      await saveWatermark(trx, target, shard, {
        seen: watermark?.seen ?? first!.seen,
        finalBefore: watermark ? watermark.finalBefore : plan.finalBefore,
        backfillNext: range?.from ?? null,
        backfillTo: range?.to ?? null,
      });
    });
    watermark = await loadWatermark(db, target, shard);
    if (range && plan.startBackfill)
      log.notice(
        `rebuild scheduled: ${iso(range.from)} .. ${iso(range.to)}${pending ? " (merged with the rebuild already pending)" : ""}`,
      );
  }
  const saved = watermark!;

  // 1. The incremental step.
  const started = Date.now();
  const step = await db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      // First statement: fixes the transaction's snapshot, which is the one we save.
      const snap = await sql<{ seen: string }>`SELECT pg_current_snapshot()::text AS seen`.execute(trx);
      const seen = snap.rows[0]!.seen;
      const pendingRebuild =
        saved.backfillNext && saved.backfillTo && saved.backfillNext < saved.backfillTo
          ? [{ from: saved.backfillNext, to: saved.backfillTo }]
          : [];
      const newlyFinal = saved.finalBefore < plan.finalBefore ? plan.newlyFinal : null;
      const ranges = touchedScanRanges(plan.horizon, plan.finalBefore, [
        ...pendingRebuild,
        ...(newlyFinal ? [newlyFinal] : []),
      ]);
      const touched = await collectTouchedBuckets(trx, policy, shard, saved.seen, ranges, plan.horizon);
      // Updated and deleted rows: their buckets join the ones recomputed one by one.
      const changes = await consumeChanges(trx, policy, shard, {
        ranges,
        finalBefore: plan.finalBefore,
        horizon: plan.horizon,
        pending: pendingRebuild[0] ?? null,
      });
      const fromTouched = await recomputeBuckets(trx, policy, shard, { kind: "touched" });
      const fromHours = newlyFinal
        ? await recomputeBuckets(trx, policy, shard, {
            kind: "hours",
            range: newlyFinal,
            keepExisting: !inherited,
          })
        : { buckets: 0, samples: 0, upserted: 0, deleted: 0 };
      await saveWatermark(trx, target, shard, {
        seen,
        finalBefore: plan.finalBefore,
        backfillNext: saved.backfillNext,
        backfillTo: saved.backfillTo,
      });
      return { seen, touched, changes, fromTouched, fromHours };
    });
  const incrementalMs = Date.now() - started;
  counts.incremental = 1;
  if (step.touched.skippedBeforeHorizon > 0)
    log.warn(
      `${step.touched.skippedBeforeHorizon} new rows belong to hours before the raw-data horizon ${iso(plan.horizon!)}; their rollups are left as they are (raw rows there may already be gone)`,
      { rows: step.touched.skippedBeforeHorizon },
    );
  if (step.changes.beforeHorizon > 0)
    log.info(
      `${step.changes.beforeHorizon} (group, hour) records of updated or deleted rows belong to hours before the raw-data horizon ${iso(plan.horizon!)}; their rollups are left as they are`,
      { records: step.changes.beforeHorizon },
    );
  const buckets = step.fromTouched.buckets + step.fromHours.buckets;
  log.notice(
    `incremental: ${step.touched.rows} new rows outside the newly final hours touched ${step.touched.buckets} (group, hour) buckets, updated or deleted rows ${step.changes.buckets}; ${buckets} metric buckets recomputed, ${step.fromTouched.upserted + step.fromHours.upserted} written, ${step.fromTouched.deleted + step.fromHours.deleted} removed`,
    {
      lateRows: step.touched.rows,
      touchedBuckets: step.touched.buckets,
      changedBuckets: step.changes.buckets,
      changeRecords: step.changes.records,
      newlyFinalHours: plan.newlyFinal
        ? (plan.newlyFinal.to.getTime() - plan.newlyFinal.from.getTime()) / HOUR_MS
        : 0,
      upserted: step.fromTouched.upserted + step.fromHours.upserted,
      durationMs: incrementalMs,
      unsettledTransactions: parseSnapshot(step.seen).xip.length,
    },
  );
  await ctx.record({
    kind: "rollup_incremental",
    partition: target,
    to: plan.finalBefore,
    rows: step.touched.rows,
    outcome: "ok",
    detail: {
      shard,
      buckets,
      changedBuckets: step.changes.buckets,
      seen: step.seen,
      durationMs: incrementalMs,
    },
    startedAt: new Date(started),
    finishedAt: new Date(),
  });

  // 2. The rebuild, if one is pending.
  const rebuilt = await runBackfill(db, ctx, options);
  if (rebuilt.batches > 0) counts.rebuild_batch = rebuilt.batches;
  await dropObsoleteLayouts(db, target, shard);

  const after = (await loadWatermark(db, target, shard))!;
  const pendingHours =
    after.backfillNext && after.backfillTo && after.backfillNext < after.backfillTo
      ? (after.backfillTo.getTime() - after.backfillNext.getTime()) / HOUR_MS
      : 0;
  return {
    status: rebuilt.interrupted ? "interrupted" : "ok",
    actions: counts,
    health: {
      finalBefore: iso(after.finalBefore),
      rollupLagSeconds: Math.max(0, Math.round((options.now.getTime() - after.finalBefore.getTime()) / 1000)),
      rebuildPendingHours: pendingHours,
      lateRows: step.touched.rows,
      changedBuckets: step.changes.buckets,
      changeTracking: tracking,
      unsettledTransactions: parseSnapshot(step.seen).xip.length,
    },
  };
}

async function firstSnapshot(db: Kysely<any>, policy: TableContext["policy"]) {
  return await db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (trx) => {
      const snap = await sql<{ seen: string }>`SELECT pg_current_snapshot()::text AS seen`.execute(trx);
      const min = await sql<{ t: Date | null }>`
        SELECT min(${columnSql(policy.timeColumn)}) AS t FROM ${relationSql(policyTable(policy))}`.execute(
        trx,
      );
      return { seen: snap.rows[0]!.seen, earliest: min.rows[0]?.t ?? null };
    });
}

async function countNewRows(db: Kysely<any>, policy: TableContext["policy"], seen: string | undefined) {
  if (!seen) return 0;
  const { xmax, xip } = parseSnapshot(seen);
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM ${relationSql(policyTable(policy))}
     WHERE ingest_xid >= ${xmax}::xid8 OR ingest_xid = ANY(${xip}::xid8[])`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}

/** Recomputes the pending rebuild range in batches of whole hours, saving progress after each. */
async function runBackfill(
  db: Kysely<DB>,
  ctx: TableContext,
  options: RollupOptions,
): Promise<{ batches: number; interrupted: boolean }> {
  const { policy, log } = ctx;
  const rollup = policy.rollup!;
  // Raw rows before the horizon may already be gone (the source's retention): a batch there only
  // adds and updates buckets, it never deletes rollup rows (a rebuild that ran for days can reach it).
  const keep = policy.retention ? parseDuration(policy.retention.keep) : undefined;
  const horizon = keep ? ceilHour(subtractDuration(options.now, keep)) : null;
  const started = Date.now();
  let lastProgress = started;
  let batches = 0;
  let hoursDone = 0;
  let buckets = 0;
  let samples = 0;
  for (;;) {
    const w = (await loadWatermark(db, rollup.target, options.shard))!;
    if (!w.backfillNext || !w.backfillTo) return { batches, interrupted: false };
    const batch = nextBackfillBatch(w.backfillNext, w.backfillTo, rollup.backfillBatchHours);
    if (!batch) {
      log.notice("rebuild complete", { hours: hoursDone, buckets, samples });
      await db
        .transaction()
        .execute((trx) =>
          saveWatermark(trx, rollup.target, options.shard, { ...w, backfillNext: null, backfillTo: null }),
        );
      return { batches, interrupted: false };
    }
    if (ctx.signal.aborted) {
      log.warn("stopping the rebuild between batches: termination requested; the next run resumes", {
        next: w.backfillNext,
      });
      return { batches, interrupted: true };
    }
    if (Date.now() - started > rollup.timeBudgetMs) {
      log.warn("rebuild stopped at the time budget; the next run resumes", {
        next: w.backfillNext,
        to: w.backfillTo,
      });
      return { batches, interrupted: false };
    }
    const batchStarted = new Date();
    const result = await db.transaction().execute(async (trx) => {
      const r = await recomputeBuckets(trx, policy, options.shard, {
        kind: "hours",
        range: batch,
        keepExisting: horizon !== null && batch.from < horizon,
      });
      await saveWatermark(trx, rollup.target, options.shard, { ...w, backfillNext: batch.to });
      return r;
    });
    batches++;
    await pauseAtFaultPoint("after-rollup-batch", log);
    const hours = (batch.to.getTime() - batch.from.getTime()) / HOUR_MS;
    hoursDone += hours;
    buckets += result.buckets;
    samples += result.samples;
    await ctx.record({
      kind: "rollup_rebuild_batch",
      partition: rollup.target,
      from: batch.from,
      to: batch.to,
      rows: result.buckets,
      outcome: "ok",
      detail: { shard: options.shard, upserted: result.upserted, deleted: result.deleted },
      startedAt: batchStarted,
      finishedAt: new Date(),
    });
    if (Date.now() - lastProgress > 5_000) {
      lastProgress = Date.now();
      const left = (w.backfillTo.getTime() - batch.to.getTime()) / HOUR_MS;
      const secondsPerHour = (Date.now() - started) / 1000 / hoursDone;
      log.info("rebuilding rollups", {
        hoursDone,
        hoursLeft: left,
        samplesPerSecond: Math.round(samples / ((Date.now() - started) / 1000)),
        buckets,
        etaSeconds: Math.round(left * secondsPerHour),
        next: batch.to,
      });
    }
    if (rollup.batchPauseMs > 0) await new Promise((r) => setTimeout(r, rollup.batchPauseMs));
  }
}
