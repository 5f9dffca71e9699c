// Consuming the records of the change triggers (changes.ts). A run's REPEATABLE READ step sees
// exactly the records of the transactions committed in its snapshot, and their raw-row changes with
// them. Records of final hours within the horizon add their buckets to the ones the step recomputes
// from raw rows; the step deletes what it consumed, so a record still visible to a reader means
// "not rolled up yet" (the real-time read serves those hours from raw rows). Kept for later:
// records of open hours (recomputed whole once final) and of a rebuild still pending (recomputed by
// the rebuild, then by a later step).
import { type Kysely, sql, type Transaction } from "kysely";
import { policyTable } from "../config/policy.ts";
import type { DB } from "../db/schema.ts";
import type { HourRange, ShardSpec } from "./plan.ts";
import type { RollupSource } from "./source.ts";
import { shardPredicate } from "./sql.ts";

export interface ChangeConsumption {
  /** Change records consumed (deleted) by this step. */
  records: number;
  /** Distinct (group, hour) buckets they added to the ones recomputed bucket by bucket. */
  buckets: number;
  /** Records of hours before the raw-data horizon, dropped unread. */
  beforeHorizon: number;
}

/**
 * Adds to the temp table rollup_touched (g, h, n) the buckets of the change records this step
 * recomputes, and deletes every record it is done with, all within the caller's REPEATABLE READ
 * transaction (only records committed in its snapshot are seen, and deleted):
 * - records of `ranges` (final hours from the horizon on, outside the hours recomputed whole):
 *   their buckets are recomputed one by one;
 * - records of hours recomputed whole by this step (newly final): consumed as they are;
 * - records of hours before `horizon`: dropped (never recomputed, the rollups stay);
 * - records of open hours (at or after finalBefore) and of `pending` (a rebuild not done yet) from
 *   the horizon on: kept for a later run.
 * Only the shard's groups; group values go back to the source column's type through its input
 * function, so the recompute joins on the column as it is.
 */
export async function consumeChanges(
  trx: Transaction<DB>,
  policy: RollupSource,
  shard: ShardSpec,
  step: { ranges: readonly HourRange[]; finalBefore: Date; horizon: Date | null; pending: HourRange | null },
): Promise<ChangeConsumption> {
  const source = policyTable(policy);
  const inRanges =
    step.ranges.length === 0
      ? sql`false`
      : sql.join(
          step.ranges.map((r) => sql`(c.bucket_ts >= ${r.from} AND c.bucket_ts < ${r.to})`),
          sql` OR `,
        );
  const beforeHorizon = step.horizon ? sql`c.bucket_ts < ${step.horizon}` : sql`false`;
  const deferred = step.pending
    ? sql`(c.bucket_ts >= ${step.pending.from} AND c.bucket_ts < ${step.pending.to} AND NOT ${beforeHorizon})`
    : sql`false`;
  const r = await sql<{ records: string; buckets: string; before_horizon: string }>`
    WITH consumed AS (
      DELETE FROM telemetry_jobs.rollup_changes c
       WHERE c.source_schema = ${source.schema} AND c.source_name = ${source.name}
         AND c.bucket_ts < ${step.finalBefore} AND NOT ${deferred}
         AND ${shardPredicate(sql`c.group_value`, shard)}
      RETURNING c.group_value, c.bucket_ts, ${inRanges} AS recompute, ${beforeHorizon} AS before_horizon
    ),
    buckets AS (SELECT DISTINCT group_value, bucket_ts FROM consumed WHERE recompute),
    added AS (
      INSERT INTO pg_temp.rollup_touched (g, h, n)
      SELECT (pg_catalog.json_populate_record(NULL::pg_temp.rollup_touched,
                                              pg_catalog.json_build_object('g', b.group_value))).g,
             b.bucket_ts, 0
        FROM buckets b
       WHERE NOT EXISTS (SELECT 1 FROM pg_temp.rollup_touched t WHERE t.g::text = b.group_value AND t.h = b.bucket_ts)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM consumed) AS records, (SELECT count(*) FROM buckets) AS buckets,
           (SELECT count(*) FROM consumed WHERE before_horizon) AS before_horizon,
           (SELECT count(*) FROM added) AS added`.execute(trx);
  const row = r.rows[0]!;
  if (Number(row.buckets) > 0) await sql`ANALYZE pg_temp.rollup_touched`.execute(trx);
  return {
    records: Number(row.records),
    buckets: Number(row.buckets),
    beforeHorizon: Number(row.before_horizon),
  };
}

/** Change records of the source not consumed yet (for dry runs). */
export async function pendingChangeBuckets(db: Kysely<DB>, policy: RollupSource): Promise<number> {
  const source = policyTable(policy);
  const r = await sql<{ n: string }>`
    SELECT count(*) AS n FROM (
      SELECT DISTINCT group_value, bucket_ts FROM telemetry_jobs.rollup_changes
       WHERE source_schema = ${source.schema} AND source_name = ${source.name}) AS x`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}
