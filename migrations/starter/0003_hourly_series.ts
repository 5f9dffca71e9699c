// The never-stale read of the starter table: one device's hourly series of one metric key. Per whole
// hour touching [p_from, p_to):
// - the rollup row, when the hour is final, none of the device's rows in that hour is newer than
//   what rollup-hourly has rolled up (not visible in every shard's saved snapshot), and no change
//   record (an UPDATE or DELETE not yet rolled up) names that hour;
// - otherwise an aggregate of the raw rows (open hours, hours with unprocessed late or changed rows,
//   hours of a rebuild still in progress).
// It reads the rollup state in telemetry_jobs (rollup_watermarks, rollup_changes,
// numeric_metrics()): the product's migrations come first.
//
// CREATE OR REPLACE: a database migrated by a release before 0007 holds an older version of this
// function (without the change records), which this replaces.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION public.telemetry_hourly_series(
      p_device_id text, p_metric_key text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (bucket_ts timestamptz, sample_count bigint, sum double precision,
                   min double precision, max double precision, avg double precision, source text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    DECLARE
      v_from timestamptz := date_trunc('hour', p_from, 'UTC');
      -- whole hours only: an hour that p_to cuts is returned whole, from either source
      v_to timestamptz := date_trunc('hour', p_to - interval '1 microsecond', 'UTC') + interval '1 hour';
      v_final_before timestamptz;
      v_min_xmin xid8;
      v_bf_from timestamptz;
      v_bf_to timestamptz;
      v_snapshots pg_snapshot[];
    BEGIN
      -- Only task layouts whose every shard has saved its state: a shard that has not run yet has
      -- rolled up nothing, and its groups must come from raw rows.
      SELECT min(w.final_before), array_agg(w.seen),
             min(w.backfill_next) FILTER (WHERE w.backfill_next < w.backfill_to),
             max(w.backfill_to) FILTER (WHERE w.backfill_next < w.backfill_to)
        INTO v_final_before, v_snapshots, v_bf_from, v_bf_to
        FROM telemetry_jobs.rollup_watermarks w
       WHERE w.target = 'public.telemetry_rollups_hourly'
         AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks o
               WHERE o.target = w.target AND o.shard_count = w.shard_count) = w.shard_count;
      -- (min() over xid8 exists only from PostgreSQL 16)
      SELECT pg_snapshot_xmin(x) INTO v_min_xmin FROM unnest(v_snapshots) AS x ORDER BY 1 LIMIT 1;
      IF v_final_before IS NULL THEN
        v_final_before := '-infinity';
      END IF;

      RETURN QUERY
      WITH stale AS (
        -- final hours holding rows the job has not rolled up yet
        SELECT date_trunc('hour', p.ts, 'UTC') AS h
          FROM public.telemetry_points p
         WHERE p.ingest_xid >= v_min_xmin
           AND p.device_id = p_device_id
           AND p.ts >= v_from AND p.ts < least(v_to, v_final_before)
           AND EXISTS (SELECT 1 FROM unnest(v_snapshots) s WHERE NOT pg_visible_in_snapshot(p.ingest_xid, s))
        UNION
        -- final hours where rows were updated or deleted since the job last recomputed them: a
        -- change record disappears in the transaction that recomputes its bucket, so one that is
        -- visible here has not been rolled up (committed or not in the job's snapshot alike)
        SELECT c.bucket_ts
          FROM telemetry_jobs.rollup_changes c
         WHERE c.source_schema = 'public' AND c.source_name = 'telemetry_points'
           AND c.group_value = p_device_id
           AND c.bucket_ts >= v_from AND c.bucket_ts < least(v_to, v_final_before)
      ),
      raw AS (
        SELECT date_trunc('hour', p.ts, 'UTC') AS h, m.value
          FROM public.telemetry_points p
          CROSS JOIN LATERAL telemetry_jobs.numeric_metrics(p.metrics) m
         WHERE p.device_id = p_device_id AND m.key = p_metric_key
           AND p.ts >= v_from AND p.ts < v_to
           AND (p.ts >= v_final_before
                OR coalesce(p.ts >= v_bf_from AND p.ts < v_bf_to, false)
                OR date_trunc('hour', p.ts, 'UTC') IN (SELECT h FROM stale))
      )
      SELECT r.bucket_ts, r.sample_count, r.sum, r.min, r.max, r.avg, 'rollup'::text
        FROM public.telemetry_rollups_hourly r
       WHERE r.device_id = p_device_id AND r.metric_key = p_metric_key
         AND r.bucket_ts >= v_from AND r.bucket_ts < least(v_to, v_final_before)
         AND NOT coalesce(r.bucket_ts >= v_bf_from AND r.bucket_ts < v_bf_to, false)
         AND r.bucket_ts NOT IN (SELECT h FROM stale)
      UNION ALL
      SELECT raw.h, count(*), sum(raw.value), min(raw.value), max(raw.value), avg(raw.value), 'raw'::text
        FROM raw GROUP BY raw.h
      ORDER BY 1;
    END
    $fn$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION public.telemetry_hourly_series(text, text, timestamptz, timestamptz)`.execute(db);
}
