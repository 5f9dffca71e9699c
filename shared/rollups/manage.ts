// rollup-hourly's work for one source table (one shard of it): make sure the source records its
// UPDATEs and DELETEs (change triggers), read the saved watermark (the facts), plan, save the
// starting point, and hand the run's units of work to the plan executor (work.ts): (1) the
// incremental step in one REPEATABLE READ transaction: recompute the hours that became final and
// the final buckets touched by newly visible rows or by committed updates and deletes, save the
// snapshot; (2) the rebuild of history, in batches of whole hours, each its own transaction,
// within the time budget; then report the table's health. What each step covers is decided by
// plan.ts and decide.ts; work.ts, incremental.ts and backfill.ts carry it out.
import { type Kysely, sql } from "kysely";
import { policyTable } from "../config/policy.ts";
import { columnSql, relationSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { TableReport } from "../run/runner.ts";
import { pendingChangeBuckets } from "./change-records.ts";
import { type ChangeTracking, ensureChangeTracking } from "./change-tracking.ts";
import { describeDryRun, describeStart, rollupHealth, startingPoint, watermarkAfterStart } from "./decide.ts";
import { type HourRange, planRollup, type RollupPlan, type ShardSpec } from "./plan.ts";
import type { RollupContext, RollupSource, RollupTask } from "./source.ts";
import {
  dropObsoleteLayouts,
  inheritedStart,
  loadSavedWatermark,
  loadWatermark,
  parseSnapshot,
  type SavedWatermark,
  saveWatermark,
} from "./watermark.ts";
import { listRollupWork, runRollupWork } from "./work.ts";

export interface RollupOptions {
  now: Date;
  dryRun: boolean;
  shard: ShardSpec;
  rebuild?: HourRange | undefined;
  /** The source's group column may hold NULL (the policy check read it from the catalog). */
  groupMayBeNull: boolean;
  /** The change triggers as this run's adoption step left them; checked here when not given. */
  changeTracking?: ChangeTracking | undefined;
}

const iso = (d: Date) => d.toISOString();

export async function manageRollup(
  db: Kysely<DB>,
  ctx: RollupContext,
  options: RollupOptions,
): Promise<TableReport> {
  const { policy, log } = ctx;
  const { rollup } = policy;
  const { shard } = options;
  const task: RollupTask = { source: policy, shard, groupMayBeNull: options.groupMayBeNull };
  const tracking = options.changeTracking ?? (await ensureChangeTracking(db, ctx, options.dryRun));
  const start = await readStart(db, task);
  const plan = planRollup({
    now: options.now,
    watermark: start.watermark,
    earliestRow: start.watermark ? null : start.first.earliest,
    rebuild: options.rebuild,
    rawKeep: policy.retention?.keepDuration,
    maxNewlyFinalHours: rollup.backfillBatchHours,
  });
  if (plan.refusals.length > 0) {
    for (const r of plan.refusals) log.error(r, { refused: true });
    return { status: "refused", actions: {}, error: plan.refusals.join("; ") };
  }
  log.info(describeStart(rollup.target, shard, start.watermark, start.inherited, plan), {
    target: rollup.target,
    newlyFinal: plan.newlyFinal && { from: plan.newlyFinal.from, to: plan.newlyFinal.to },
    horizon: plan.horizon,
    rebuild: plan.startBackfill && { from: plan.startBackfill.from, to: plan.startBackfill.to },
  });
  if (options.dryRun) return await planOnly(db, ctx, task, plan, start);

  const saved = await saveStart(db, ctx, task, start, plan);
  const work = await runRollupWork(db, ctx, task, { saved, plan, inherited: start.inherited });
  await dropObsoleteLayouts(db, rollup.target, shard);

  const after = await loadSavedWatermark(db, rollup.target, shard);
  const { step } = work;
  const health = rollupHealth(
    after,
    options.now,
    {
      lateRows: step.touched.rows,
      changedBuckets: step.changes.buckets,
      unsettledTransactions: parseSnapshot(step.seen).xip.length,
    },
    tracking,
  );
  const nullGroupRows = step.nullGroupRows + work.rebuildNullGroupRows;
  return {
    status: work.status,
    actions: work.actions,
    health: withNullGroups(ctx, task, health, nullGroupRows),
  };
}

/** Where the run starts: the task's saved watermark, an older task layout's, or a first snapshot. */
type Start =
  | { watermark: SavedWatermark; inherited: boolean }
  | { watermark: undefined; inherited: false; first: { seen: string; earliest: Date | null } };

async function readStart(db: Kysely<DB>, task: RollupTask): Promise<Start> {
  const target = task.source.rollup.target;
  const own = await loadWatermark(db, target, task.shard);
  if (own) return { watermark: own, inherited: false };
  const inherited = await inheritedStart(db, target, task.shard);
  if (inherited) return { watermark: inherited, inherited: true };
  return { watermark: undefined, inherited: false, first: await firstSnapshot(db, task.source) };
}

/**
 * A first run takes its snapshot and the earliest row in one REPEATABLE READ transaction: every
 * row visible in the saved snapshot is then either in the rebuild range or in an open hour, and
 * every later row is "new" to the next run (read separately, a row committed in between was lost).
 */
async function firstSnapshot(db: Kysely<DB>, policy: RollupSource) {
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

/**
 * A dry run counts what the incremental step would find, lists the run's units of work from the
 * starting point it would save, and changes nothing.
 */
async function planOnly(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  plan: RollupPlan,
  start: Start,
): Promise<TableReport> {
  const pending = await countNewRows(db, ctx.policy, start.watermark?.seen);
  const changed = await pendingChangeBuckets(db, ctx.policy);
  ctx.log.info(describeDryRun(plan, pending, changed), { newRows: pending, changedBuckets: changed });
  const from = watermarkAfterStart(start.watermark, startingPoint(start.watermark, start.inherited, plan));
  await listRollupWork(ctx, task, from, plan);
  return {
    status: "ok",
    actions: { incremental: 1, ...(plan.startBackfill ? { rebuild: 1 } : {}) },
    health: {},
  };
}

async function countNewRows(db: Kysely<DB>, policy: RollupSource, seen: string | undefined) {
  if (!seen) return 0;
  const { xmax, xip } = parseSnapshot(seen);
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM ${relationSql(policyTable(policy))}
     WHERE ingest_xid >= ${xmax}::xid8 OR ingest_xid = ANY(${xip}::xid8[])`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}

/**
 * A first run (or a new task layout's, or one asked to rebuild) saves its starting point at once,
 * so the rebuild below resumes after a kill. Returns the watermark the incremental step starts from.
 */
async function saveStart(
  db: Kysely<DB>,
  ctx: RollupContext,
  task: RollupTask,
  start: Start,
  plan: RollupPlan,
): Promise<SavedWatermark> {
  const point = startingPoint(start.watermark, start.inherited, plan);
  if (!point) {
    if (start.watermark) return start.watermark;
    throw new Error("a first run always saves its starting point");
  }
  const target = task.source.rollup.target;
  await db.transaction().execute(async (trx) => {
    await saveWatermark(trx, target, task.shard, {
      seen: start.watermark ? start.watermark.seen : start.first.seen,
      finalBefore: point.finalBefore,
      backfillNext: point.rebuild?.from ?? null,
      backfillTo: point.rebuild?.to ?? null,
    });
  });
  const saved = await loadSavedWatermark(db, target, task.shard);
  if (point.rebuild && point.scheduled)
    ctx.log.notice(
      `rebuild scheduled: ${iso(point.rebuild.from)} .. ${iso(point.rebuild.to)}${point.merged ? " (merged with the rebuild already pending)" : ""}`,
    );
  return saved;
}

/**
 * Rows with a NULL group value were skipped (they belong to no bucket): a WARN with the count, and
 * nullGroupRowsSkipped in the table's health (so in the run summary), for every source whose group
 * column may hold NULL. Sources with a NOT NULL group column report nothing new.
 */
function withNullGroups(
  ctx: RollupContext,
  task: RollupTask,
  health: Record<string, unknown>,
  rows: number,
): Record<string, unknown> {
  if (!task.groupMayBeNull) return health;
  const { rollup } = ctx.policy;
  if (rows > 0)
    ctx.log.warn(
      `${rows} rows with a NULL ${rollup.groupBy} were skipped: a NULL group is no bucket of the (${rollup.groupColumn}, metric_key, hour) key. Give those rows a group (then rebuild their hours with --from/--to), or delete them`,
      { rows, groupBy: rollup.groupBy },
    );
  return { ...health, nullGroupRowsSkipped: rows };
}
