// Incremental hourly rollups (rollup-hourly job) and the real-time read.
//
// Change tracking: every raw row records the id of the transaction that inserted it
// (ingest_xid xid8 DEFAULT pg_current_xact_id()). A run remembers the snapshot it saw
// (pg_current_snapshot()); the next run's new rows are exactly those whose ingest_xid was still
// running in that snapshot or started after it: an index range scan, cost proportional to new rows,
// and no waiting on anyone's transaction. The index is on (ingest_xid, ts): a run looks for new
// rows only in the hours it must recompute bucket by bucket, and the time is checked in the index (an in-flight writer's xid stays in the saved snapshot
// until it ends).
// Adding a nullable column and then a default is catalog-only (no rewrite), so an existing table
// can gain it (migrate convert, or the ALTERs in docs/runbooks/rollups.md).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE public.telemetry_points ADD COLUMN ingest_xid xid8`.execute(db);
  await sql`ALTER TABLE public.telemetry_points ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()`.execute(
    db,
  );
  // A plain CREATE INDEX on the parent: right for the greenfield schema this project creates (the
  // table is new in the same release). A populated table gains the index per partition,
  // CONCURRENTLY, then attached: docs/runbooks/rollups.md.
  await sql`CREATE INDEX telemetry_points_ingest_xid_idx ON public.telemetry_points (ingest_xid, ts)`.execute(
    db,
  );

  // One row per rollup target and shard (Cloud Run task) layout.
  await sql`
    CREATE TABLE telemetry_jobs.rollup_watermarks (
      target text NOT NULL,
      shard_count int NOT NULL CHECK (shard_count >= 1),
      shard_index int NOT NULL CHECK (shard_index >= 0 AND shard_index < shard_count),
      -- rows whose inserting transaction had committed in this snapshot are rolled up
      seen pg_snapshot NOT NULL,
      -- hours before this are materialized (final); later hours are still open
      final_before timestamptz NOT NULL,
      -- a rebuild in progress: hours [backfill_next, backfill_to) are not yet recomputed
      backfill_next timestamptz,
      backfill_to timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (target, shard_count, shard_index)
    )`.execute(db);

  // Only finite numbers count: jsonb numbers (never NaN/Infinity: those become JSON strings) that
  // fit float8; booleans, strings (numeric or not), nulls, arrays and objects are skipped.
  // A plain SQL set-returning function: the planner inlines it into the calling query.
  await sql`
    CREATE FUNCTION telemetry_jobs.numeric_metrics(doc jsonb)
    RETURNS TABLE (key text, value double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
      SELECT e.key, e.value::double precision
        FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc END) AS e
       WHERE jsonb_typeof(e.value) = 'number'
         -- jsonb prints numbers in plain notation: under 300 characters, a nonzero value lies
         -- between 1e-298 and 1e299 and converts; only longer ones need the exact range check.
         AND (length(e.value::text) < 300
              OR e.value::numeric = 0
              OR abs(e.value::numeric) BETWEEN 4.9406564584124654e-324 AND 1.7976931348623157e308)
    $fn$`.execute(db);

  // Stable shard of a group value (md5: the same on every PostgreSQL version and platform).
  await sql`
    CREATE FUNCTION telemetry_jobs.shard_of(value text, shard_count int)
    RETURNS int LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
      SELECT ((('x' || substr(md5(value), 1, 8))::bit(32)::int & 2147483647) % shard_count)
    $fn$`.execute(db);

  // The never-stale read for the greenfield schema. Per whole hour touching [p_from, p_to):
  // - the rollup row, when the hour is final and none of the device's rows in that hour is newer
  //   than what the job has rolled up (not visible in every shard's saved snapshot);
  // - otherwise an aggregate of the raw rows (open hours, hours with unprocessed late rows, hours of
  //   a rebuild still in progress).
  await sql`
    CREATE FUNCTION public.telemetry_hourly_series(
      p_device_id text, p_metric_key text, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (bucket_ts timestamptz, sample_count bigint, sum double precision,
                   min double precision, max double precision, avg double precision, source text)
    LANGUAGE plpgsql STABLE AS $fn$
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
        SELECT DISTINCT date_trunc('hour', p.ts, 'UTC') AS h
          FROM public.telemetry_points p
         WHERE p.ingest_xid >= v_min_xmin
           AND p.device_id = p_device_id
           AND p.ts >= v_from AND p.ts < least(v_to, v_final_before)
           AND EXISTS (SELECT 1 FROM unnest(v_snapshots) s WHERE NOT pg_visible_in_snapshot(p.ingest_xid, s))
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
  await sql`DROP FUNCTION telemetry_jobs.shard_of(text, int)`.execute(db);
  await sql`DROP FUNCTION telemetry_jobs.numeric_metrics(jsonb)`.execute(db);
  await sql`DROP TABLE telemetry_jobs.rollup_watermarks`.execute(db);
  await sql`DROP INDEX public.telemetry_points_ingest_xid_idx`.execute(db);
  await sql`ALTER TABLE public.telemetry_points DROP COLUMN ingest_xid`.execute(db);
}
