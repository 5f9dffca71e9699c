// The rollup executor: recomputes buckets from raw rows and saves the watermark, each unit of work
// in one transaction with the watermark update, so a kill at any point leaves either the old or
// the new state (recomputing a bucket from raw rows is idempotent: a rerun converges).
import { type Kysely, type RawBuilder, sql, type Transaction } from "kysely";
import { policyTable, type TablePolicy } from "../config/policy.ts";
import type { HourRange, ShardSpec, Watermark } from "./plan.ts";
import { rollupSql, shardPredicate } from "./sql.ts";

export interface SavedWatermark extends Watermark {
  /** pg_snapshot text "xmin:xmax:xip,...": rows committed in it are rolled up. */
  seen: string;
}

export function parseSnapshot(text: string): { xmin: string; xmax: string; xip: string[] } {
  const [xmin, xmax, xip] = text.split(":");
  if (xmin === undefined || xmax === undefined || xip === undefined)
    throw new Error(`bad pg_snapshot "${text}"`);
  return { xmin, xmax, xip: xip === "" ? [] : xip.split(",") };
}

export async function loadWatermark(
  db: Kysely<any>,
  target: string,
  shard: ShardSpec,
): Promise<SavedWatermark | undefined> {
  const r = await sql<{
    seen: string;
    final_before: Date;
    backfill_next: Date | null;
    backfill_to: Date | null;
  }>`
    SELECT seen::text AS seen, final_before, backfill_next, backfill_to
      FROM telemetry_jobs.rollup_watermarks
     WHERE target = ${target} AND shard_count = ${shard.count} AND shard_index = ${shard.index}`.execute(db);
  const row = r.rows[0];
  if (!row) return undefined;
  return {
    seen: row.seen,
    finalBefore: row.final_before,
    backfillNext: row.backfill_next,
    backfillTo: row.backfill_to,
  };
}

/**
 * A shard layout seen for the first time (CLOUD_RUN_TASK_COUNT changed) starts from what an earlier,
 * complete layout (every one of its tasks has saved state) had certainly processed: the oldest xmin
 * among its snapshots, as an empty snapshot (everything from there on counts as new: more work
 * once, never a lost row), its oldest finalBefore, and any rebuild it still had pending.
 * Undefined when there is no complete layout: the task starts like a first run.
 */
export async function inheritedStart(
  db: Kysely<any>,
  target: string,
  shard: ShardSpec,
): Promise<SavedWatermark | undefined> {
  // (min() over xid8 exists only from PostgreSQL 16; ORDER BY works everywhere.)
  const r = await sql<{
    xmin: string | null;
    final_before: Date | null;
    backfill_next: Date | null;
    backfill_to: Date | null;
  }>`
    WITH complete AS (
      SELECT w.* FROM telemetry_jobs.rollup_watermarks w
       WHERE w.target = ${target} AND w.shard_count <> ${shard.count}
         AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks o
               WHERE o.target = w.target AND o.shard_count = w.shard_count) = w.shard_count)
    SELECT (SELECT pg_snapshot_xmin(seen) FROM complete ORDER BY 1 LIMIT 1)::text AS xmin,
           (SELECT min(final_before) FROM complete) AS final_before,
           (SELECT min(backfill_next) FROM complete WHERE backfill_next < backfill_to) AS backfill_next,
           (SELECT max(backfill_to) FROM complete WHERE backfill_next < backfill_to) AS backfill_to`.execute(
    db,
  );
  const row = r.rows[0];
  if (!row?.xmin || !row.final_before) return undefined;
  return {
    seen: `${row.xmin}:${row.xmin}:`,
    finalBefore: row.final_before,
    backfillNext: row.backfill_next,
    backfillTo: row.backfill_to,
  };
}

export async function saveWatermark(
  trx: Kysely<any>,
  target: string,
  shard: ShardSpec,
  w: {
    seen: RawBuilder<unknown> | string;
    finalBefore: Date;
    backfillNext: Date | null;
    backfillTo: Date | null;
  },
): Promise<void> {
  const seen = typeof w.seen === "string" ? sql`${w.seen}::pg_snapshot` : w.seen;
  await sql`
    INSERT INTO telemetry_jobs.rollup_watermarks AS w
           (target, shard_count, shard_index, seen, final_before, backfill_next, backfill_to, updated_at)
    VALUES (${target}, ${shard.count}, ${shard.index}, ${seen}, ${w.finalBefore}, ${w.backfillNext}, ${w.backfillTo}, now())
    ON CONFLICT (target, shard_count, shard_index) DO UPDATE
       SET seen = excluded.seen, final_before = excluded.final_before, backfill_next = excluded.backfill_next,
           backfill_to = excluded.backfill_to, updated_at = excluded.updated_at`.execute(trx);
}

/** Once every task of the current layout has saved its state, older layouts' rows are obsolete. */
export async function dropObsoleteLayouts(
  db: Kysely<any>,
  target: string,
  shard: ShardSpec,
): Promise<number> {
  const r = await sql`
    DELETE FROM telemetry_jobs.rollup_watermarks
     WHERE target = ${target} AND shard_count <> ${shard.count}
       AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks
             WHERE target = ${target} AND shard_count = ${shard.count}) = ${shard.count}`.execute(db);
  return Number(r.numAffectedRows ?? 0n);
}

/**
 * Raw rows whose group value is NULL belong to no (group, metric key, hour) bucket: the target's
 * group column is part of its key and NOT NULL. They are left out of every bucket and counted, so
 * one such row cannot fail every run (and stop final_before) forever. The count of a run lives here,
 * per policy object; the job reports it. A source whose group column is NOT NULL (validated) adds
 * nothing to any query.
 */
export interface NullGroupTally {
  readonly mayBeNull: boolean;
  /**
   * Rows skipped by this run: in the hours it recomputed whole and among the late rows it rolled up.
   * A NULL group has no shard, so in a sharded run only task 0 counts them.
   */
  rows: number;
}

const nullGroupTallies = new WeakMap<TablePolicy, NullGroupTally>();

/** Starts the tally of a run (the policy check knows from the catalog whether NULL can occur). */
export function startNullGroupTally(policy: TablePolicy, mayBeNull: boolean): NullGroupTally {
  const tally: NullGroupTally = { mayBeNull, rows: 0 };
  nullGroupTallies.set(policy, tally);
  return tally;
}

export function nullGroupTally(policy: TablePolicy): NullGroupTally | undefined {
  return nullGroupTallies.get(policy);
}

/**
 * True when column `a` (pg_attribute) of relation `c` (pg_class) cannot hold NULL: attnotnull, and not
 * merely a PostgreSQL 18 NOT NULL constraint added NOT VALID (attnotnull is set, yet existing rows
 * may still be NULL). Earlier versions keep no not-null rows in pg_constraint: the test is then
 * attnotnull alone.
 */
export const VALIDATED_NOT_NULL = sql<boolean>`(a.attnotnull AND NOT EXISTS (
  SELECT 1 FROM pg_catalog.pg_constraint k
   WHERE k.conrelid = c.oid AND k.contype = 'n' AND NOT k.convalidated AND k.conkey = ARRAY[a.attnum]))`;

/** Whether the source's group column may hold NULL (a missing column counts as nullable). */
export async function groupMayBeNull(db: Kysely<any>, policy: TablePolicy): Promise<boolean> {
  const source = policyTable(policy);
  const r = await sql<{ not_null: boolean }>`
    SELECT ${VALIDATED_NOT_NULL} AS not_null
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
     WHERE n.nspname = ${source.schema} AND c.relname = ${source.name}
       AND a.attname = ${policy.rollup!.groupBy}`.execute(db);
  return r.rows[0]?.not_null !== true;
}

/** The run's tally; a caller that did not start one gets one from the catalog. */
async function tallyFor(db: Kysely<any>, policy: TablePolicy): Promise<NullGroupTally> {
  return nullGroupTallies.get(policy) ?? startNullGroupTally(policy, await groupMayBeNull(db, policy));
}

export interface RecomputeResult {
  buckets: number;
  /** Metric values aggregated (rows x numeric keys). */
  samples: number;
  upserted: number;
  deleted: number;
  /** Rows of the recomputed hours skipped because their group is NULL (scope "hours" only). */
  nullGroupRows: number;
}

/**
 * touched: the buckets listed in rollup_touched. hours: every bucket of a range of whole hours.
 * `keepExisting` skips deleting rollup rows that have no raw values: for hours that became final
 * since the last run (open hours are never materialized, so there is nothing to delete, and the
 * range-wide delete would scan the rollup table), and for hours before the raw-data horizon
 * (their raw rows may be gone while their rollups must stay).
 */
type Scope = { kind: "touched" } | { kind: "hours"; range: HourRange; keepExisting?: boolean };

/**
 * Recomputes whole (group, metric key, hour) buckets from the raw rows and writes them:
 * - scope "touched": the buckets listed in the temp table rollup_touched (g, h);
 * - scope "hours": every bucket of the shard's groups in a range of whole hours.
 * Rollup rows of the scope whose key no longer has raw values are deleted, so each bucket equals
 * a GROUP BY over the raw rows. Unchanged buckets are not rewritten.
 */
export async function recomputeBuckets(
  trx: Transaction<any>,
  policy: TablePolicy,
  shard: ShardSpec,
  scope: Scope,
): Promise<RecomputeResult> {
  const q = rollupSql(policy);
  const tally = await tallyFor(trx, policy);
  // (Scope "touched" needs no filter: its join on the group never matches a NULL.)
  const groupKnown = tally.mayBeNull ? sql`AND ${q.group} IS NOT NULL` : sql``;
  const countNulls = tally.mayBeNull && scope.kind === "hours" && shard.index === 0;
  const agg =
    scope.kind === "touched"
      ? sql`SELECT t.g, m.key, t.h, count(*)::bigint AS n, sum(m.value) AS total, min(m.value) AS lo, max(m.value) AS hi
              FROM rollup_touched t
              JOIN ${q.source} AS s ON ${q.group} = t.g AND ${q.time} >= t.h AND ${q.time} < t.h + interval '1 hour'
              CROSS JOIN LATERAL ${q.metricPairs}
             GROUP BY t.g, m.key, t.h`
      : sql`SELECT ${q.group} AS g, m.key, date_trunc('hour', ${q.time}, 'UTC') AS h, count(*)::bigint AS n,
                   sum(m.value) AS total, min(m.value) AS lo, max(m.value) AS hi
              FROM ${q.source} AS s
              CROSS JOIN LATERAL ${q.metricPairs}
             WHERE ${q.time} >= ${scope.range.from} AND ${q.time} < ${scope.range.to} AND ${shardPredicate(q.group, shard)}
                   ${groupKnown}
             GROUP BY 1, 2, 3`;
  const nulls =
    countNulls && scope.kind === "hours"
      ? sql`nulls AS (
          SELECT count(*) AS n FROM ${q.source} AS s
           WHERE ${q.group} IS NULL AND ${q.time} >= ${scope.range.from} AND ${q.time} < ${scope.range.to}),`
      : sql``;
  const inScope =
    scope.kind === "touched"
      ? sql`EXISTS (SELECT 1 FROM rollup_touched t WHERE t.g::text = r.${q.targetGroup} AND t.h = r.bucket_ts)`
      : sql`r.bucket_ts >= ${scope.range.from} AND r.bucket_ts < ${scope.range.to}
            AND ${shardPredicate(sql`r.${q.targetGroup}`, shard)}`;
  const r = await sql<{
    buckets: string;
    samples: string;
    upserted: string;
    deleted: string;
    null_groups: string;
  }>`
    WITH agg AS MATERIALIZED (${agg}),
    ${nulls}
    upserted AS (
      INSERT INTO ${q.target} AS r (${q.targetGroup}, metric_key, bucket_ts, sample_count, sum, min, max, avg, updated_at)
      SELECT g::text, key, h, n, total, lo, hi, total / n, now() FROM agg
      ON CONFLICT (${q.targetGroup}, metric_key, bucket_ts) DO UPDATE
         SET sample_count = excluded.sample_count, sum = excluded.sum, min = excluded.min,
             max = excluded.max, avg = excluded.avg, updated_at = excluded.updated_at
       WHERE (r.sample_count, r.sum, r.min, r.max) IS DISTINCT FROM
             (excluded.sample_count, excluded.sum, excluded.min, excluded.max)
      RETURNING 1
    ),
    deleted AS (
      DELETE FROM ${q.target} AS r
       WHERE ${scope.kind === "hours" && scope.keepExisting ? sql`false` : inScope}
         AND NOT EXISTS (SELECT 1 FROM agg a
                          WHERE a.g::text = r.${q.targetGroup} AND a.key = r.metric_key AND a.h = r.bucket_ts)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM agg) AS buckets, (SELECT coalesce(sum(n), 0) FROM agg) AS samples,
           (SELECT count(*) FROM upserted) AS upserted,
           (SELECT count(*) FROM deleted) AS deleted,
           ${countNulls ? sql`(SELECT n FROM nulls)` : sql`0`} AS null_groups`.execute(trx);
  const row = r.rows[0]!;
  const nullGroupRows = Number(row.null_groups);
  tally.rows += nullGroupRows;
  return {
    buckets: Number(row.buckets),
    samples: Number(row.samples),
    upserted: Number(row.upserted),
    deleted: Number(row.deleted),
    nullGroupRows,
  };
}

/**
 * Fills the temp table rollup_touched (g, h) with the buckets, within `ranges`, of rows that became
 * visible since `prev` (the saved snapshot): rows of transactions that were still running then
 * (its xip list) or that started after it (xid >= its xmax). Runs in the caller's REPEATABLE READ
 * transaction, so "visible" means committed in that transaction's snapshot. Also counts new rows
 * before the horizon (left alone). New rows with a NULL group touch no bucket: they are counted
 * (nullGroupRows) and left out of rollup_touched and of `rows`.
 */
export async function collectTouchedBuckets(
  trx: Transaction<any>,
  policy: TablePolicy,
  shard: ShardSpec,
  prev: string,
  ranges: readonly HourRange[],
  horizon: Date | null,
): Promise<{ rows: number; buckets: number; skippedBeforeHorizon: number; nullGroupRows: number }> {
  const q = rollupSql(policy);
  const tally = await tallyFor(trx, policy);
  // A NULL group has no shard (shard_of is STRICT): task 0 of a sharded run picks those rows up
  // too, only to count them.
  const inShard =
    tally.mayBeNull && shard.count > 1 && shard.index === 0
      ? sql`(${shardPredicate(q.group, shard)} OR ${q.group} IS NULL)`
      : shardPredicate(q.group, shard);
  const { xmax, xip } = parseSnapshot(prev);
  const isNew = sql`(s.ingest_xid >= ${xmax}::xid8 OR s.ingest_xid = ANY(${xip}::xid8[]))`;
  // One scan per range and per half of the "new" condition, so each is an index range scan on
  // (ingest_xid, time) with partition pruning on time.
  const scans = ranges.flatMap((r) =>
    [sql`s.ingest_xid >= ${xmax}::xid8`, sql`s.ingest_xid = ANY(${xip}::xid8[])`].map(
      (cond) => sql`SELECT ${q.group} AS g, date_trunc('hour', ${q.time}, 'UTC') AS h FROM ${q.source} AS s
        WHERE ${cond} AND ${q.time} >= ${r.from} AND ${q.time} < ${r.to} AND ${inShard}`,
    ),
  );
  // The planner treats "new" and "in these hours" as independent; when most new rows sit in the
  // newly final hours (excluded here) it could overestimate and scan a whole partition. Only the
  // (ingest_xid, time) index keeps this proportional to new rows: no sequential scans here.
  await sql`SET LOCAL enable_seqscan = off`.execute(trx);
  // With no scan, the columns still get the source's types: g is joined with the group column.
  const union =
    scans.length > 0
      ? sql.join(scans, sql` UNION ALL `)
      : sql`SELECT ${q.group} AS g, date_trunc('hour', ${q.time}, 'UTC') AS h FROM ${q.source} AS s WHERE false`;
  await sql`
    CREATE TEMP TABLE rollup_touched ON COMMIT DROP AS
    SELECT x.g, x.h, count(*) AS n FROM (${union}) AS x GROUP BY x.g, x.h`.execute(trx);
  await sql`SET LOCAL enable_seqscan = on`.execute(trx);
  let nullGroupRows = 0;
  if (tally.mayBeNull) {
    const removed = await sql<{ n: string }>`
      WITH d AS (DELETE FROM rollup_touched WHERE g IS NULL RETURNING n)
      SELECT coalesce(sum(n), 0) AS n FROM d`.execute(trx);
    nullGroupRows = Number(removed.rows[0]?.n ?? 0);
    tally.rows += nullGroupRows;
  }
  // The planner must know how few buckets there are, or it may hash-join the whole raw table.
  await sql`ANALYZE rollup_touched`.execute(trx);
  const skipped = horizon
    ? await sql<{ n: string }>`SELECT count(*) AS n FROM ${q.source} AS s
        WHERE ${isNew} AND ${q.time} < ${horizon} AND ${shardPredicate(q.group, shard)}`.execute(trx)
    : undefined;
  const counts = await sql<{ rows: string; buckets: string }>`
    SELECT coalesce(sum(n), 0) AS rows, count(*) AS buckets FROM rollup_touched`.execute(trx);
  const c = counts.rows[0]!;
  return {
    rows: Number(c.rows),
    buckets: Number(c.buckets),
    skippedBeforeHorizon: Number(skipped?.rows[0]?.n ?? 0),
    nullGroupRows,
  };
}
