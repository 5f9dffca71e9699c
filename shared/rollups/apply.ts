// The rollup executor's statements: recompute buckets from raw rows, and find the buckets touched
// by rows that became visible since the saved snapshot. Each runs in the caller's transaction, which
// also saves the watermark, so a kill at any point leaves either the old or the new state
// (recomputing a bucket from raw rows is idempotent: a rerun converges).
import { type RawBuilder, sql, type Transaction } from "kysely";
import type { DB } from "../db/schema.ts";
import type { HourRange } from "./plan.ts";
import type { RollupTask } from "./source.ts";
import { type RollupSql, rollupSql, shardPredicate } from "./sql.ts";
import { parseSnapshot } from "./watermark.ts";

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
 * `total / n` (float8 by a positive count) as IEEE division gives it, never an error. PostgreSQL's
 * float8 division raises "value out of range: underflow" when a non-zero dividend gives a zero
 * quotient: a sum of subnormal values such as -5e-324 over 2 samples, whose exact mean
 * (-2.5e-324) rounds to -0. Raised, it would fail every run that meets the bucket. Such a mean is
 * returned as a zero of the sum's sign (total * 0). The test, for |total| < 1e-290 only (so
 * nothing overflows): the quotient rounds to zero exactly when |total| / n <= 2^-1075, half the
 * smallest subnormal (a tie rounds to the even zero), i.e. 2 * |total| * 2^600 <= n * 2^-474,
 * where both sides are scaled by 2^600 and exact. Larger sums divide as usual: their quotient is
 * at least 1e-290 / 2^63, never zero. PostgreSQL's avg() would avoid the error too, but it raises
 * "overflow" for values near the float8 limit, which sum / n does not.
 */
export function meanSql(total: RawBuilder<unknown>, n: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`CASE
      WHEN abs(${total}) >= 1e-290 OR ${total} = 0 THEN ${total} / ${n}
      WHEN 2 * (abs(${total}) * power(2::float8, 600)) <= ${n} * power(2::float8, -474) THEN ${total} * 0
      ELSE ${total} / ${n} END`;
}

/** The parts of a recompute that depend on its scope. */
function scopeSql(q: RollupSql, task: RollupTask, scope: Scope) {
  const { shard } = task;
  // (Scope "touched" needs no filter: its join on the group never matches a NULL.)
  const groupKnown = task.groupMayBeNull ? sql`AND ${q.group} IS NOT NULL` : sql``;
  const countNulls = task.groupMayBeNull && scope.kind === "hours" && shard.index === 0;
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
  const deletable = scope.kind === "hours" && scope.keepExisting ? sql`false` : inScope;
  return { agg, nulls, deletable, countNulls };
}

/**
 * Recomputes whole (group, metric key, hour) buckets from the raw rows and writes them:
 * - scope "touched": the buckets listed in the temp table rollup_touched (g, h);
 * - scope "hours": every bucket of the shard's groups in a range of whole hours.
 * Rollup rows of the scope whose key no longer has raw values are deleted, so each bucket equals
 * a GROUP BY over the raw rows. Unchanged buckets are not rewritten. Raw rows whose group is NULL
 * belong to no bucket (the target's group column is part of its key and NOT NULL): they are left
 * out and, in scope "hours", counted, so one such row cannot fail every run (and stop
 * final_before) forever. A NULL group has no shard, so in a sharded run only task 0 counts them.
 */
export async function recomputeBuckets(
  trx: Transaction<DB>,
  task: RollupTask,
  scope: Scope,
): Promise<RecomputeResult> {
  const q = rollupSql(task.source);
  const { agg, nulls, deletable, countNulls } = scopeSql(q, task, scope);
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
      SELECT g::text, key, h, n, total, lo, hi, ${meanSql(sql`total`, sql`n`)}, now() FROM agg
      ON CONFLICT (${q.targetGroup}, metric_key, bucket_ts) DO UPDATE
         SET sample_count = excluded.sample_count, sum = excluded.sum, min = excluded.min,
             max = excluded.max, avg = excluded.avg, updated_at = excluded.updated_at
       WHERE (r.sample_count, r.sum, r.min, r.max) IS DISTINCT FROM
             (excluded.sample_count, excluded.sum, excluded.min, excluded.max)
      RETURNING 1
    ),
    deleted AS (
      DELETE FROM ${q.target} AS r
       WHERE ${deletable}
         AND NOT EXISTS (SELECT 1 FROM agg a
                          WHERE a.g::text = r.${q.targetGroup} AND a.key = r.metric_key AND a.h = r.bucket_ts)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM agg) AS buckets, (SELECT coalesce(sum(n), 0) FROM agg) AS samples,
           (SELECT count(*) FROM upserted) AS upserted,
           (SELECT count(*) FROM deleted) AS deleted,
           ${countNulls ? sql`(SELECT n FROM nulls)` : sql`0`} AS null_groups`.execute(trx);
  const row = r.rows[0]!;
  return {
    buckets: Number(row.buckets),
    samples: Number(row.samples),
    upserted: Number(row.upserted),
    deleted: Number(row.deleted),
    nullGroupRows: Number(row.null_groups),
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
  trx: Transaction<DB>,
  task: RollupTask,
  prev: string,
  ranges: readonly HourRange[],
  horizon: Date | null,
): Promise<{ rows: number; buckets: number; skippedBeforeHorizon: number; nullGroupRows: number }> {
  const q = rollupSql(task.source);
  const { shard } = task;
  // A NULL group has no shard (shard_of is STRICT): task 0 of a sharded run picks those rows up
  // too, only to count them.
  const inShard =
    task.groupMayBeNull && shard.count > 1 && shard.index === 0
      ? sql`(${shardPredicate(q.group, shard)} OR ${q.group} IS NULL)`
      : shardPredicate(q.group, shard);
  const { xmax, xip } = parseSnapshot(prev);
  // Written after `prev` and committed in this transaction's snapshot, so below its xmax: the upper
  // bound changes no result (a row of a transaction at or after it is invisible here); it is there
  // for the planner. From the histogram alone, "ingest_xid >= xmax" holds for every row written
  // since the last run, often half of the current partition; taken as independent of "in these
  // hours", the index on time alone then looks as good as (ingest_xid, time), and scanning it
  // fetches every row of those hours in the partition only to drop the old ones. A range whose
  // upper bound is known only at run time is estimated as narrow, which keeps the scan on
  // (ingest_xid, time): the hours are checked in the index and only new rows are fetched.
  const after = sql`s.ingest_xid >= ${xmax}::xid8
    AND s.ingest_xid < (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()))`;
  const isNew = sql`((${after}) OR s.ingest_xid = ANY(${xip}::xid8[]))`;
  // One scan per range and per half of the "new" condition, so each is an index range scan on
  // (ingest_xid, time) with partition pruning on time.
  const scans = ranges.flatMap((r) =>
    [after, sql`s.ingest_xid = ANY(${xip}::xid8[])`].map(
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
  if (task.groupMayBeNull) {
    const removed = await sql<{ n: string }>`
      WITH d AS (DELETE FROM rollup_touched WHERE g IS NULL RETURNING n)
      SELECT coalesce(sum(n), 0) AS n FROM d`.execute(trx);
    nullGroupRows = Number(removed.rows[0]?.n ?? 0);
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
