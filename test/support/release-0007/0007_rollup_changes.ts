// Change tracking for UPDATE and DELETE of raw rows (inserts carry ingest_xid, migration 0004).
//
// rollup-hourly installs, on each rollup source, two AFTER ... FOR EACH STATEMENT triggers, one for
// UPDATE and one for DELETE, with transition tables; there is no INSERT trigger, so inserts pay
// nothing. Each statement adds one row per distinct (group value, hour) it touched to
// telemetry_jobs.rollup_changes, in the writing transaction: the record becomes visible exactly when
// the change does. An UPDATE records the hours and groups of the old and of the new row versions
// (a row moved to another hour or another device touches both). rollup-hourly recomputes those
// buckets from raw rows and deletes the records it consumed, in the same transaction; records of
// hours before the raw-data horizon are dropped unread (raw rows there may be gone by design, and
// the rollups must outlive them).
//
// What PostgreSQL fires (checked on 14 and 18): a statement that names a partitioned table fires
// the parent's statement triggers, and their transition tables hold the rows of every partition
// the statement touched; a row an UPDATE moves to another partition appears once in the old and
// once in the new transition table. A statement that names a partition fires only that
// partition's own triggers, and statement triggers are never cloned to partitions: retention's
// deletes (DELETE FROM ONLY one leaf), dropped or detached partitions and partition-manager's moves
// out of DEFAULT are not recorded. TRUNCATE fires none of them (and allows no transition table).
// Transition tables are refused on row-level triggers of partitioned tables and partitions, and on
// triggers with more than one event: hence two statement triggers.
//
// The trigger function runs as its owner (SECURITY DEFINER: application roles need no grant on
// this schema), with search_path, TimeZone and DateStyle fixed so a session's settings change
// nothing; EXECUTE is revoked from PUBLIC, so only its owner can attach it to a table.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE telemetry_jobs.rollup_changes (
      -- the table the statement named (a rollup source), as pg_catalog spells it
      source_schema text NOT NULL,
      source_name text NOT NULL,
      -- the group column's value as text (the form the rollup target stores), never NULL
      group_value text NOT NULL,
      -- the hour (UTC) the old or new row version belongs to
      bucket_ts timestamptz NOT NULL,
      -- the writing transaction: for diagnostics (settled or not, like ingest_xid)
      xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE INDEX rollup_changes_source_idx
      ON telemetry_jobs.rollup_changes (source_schema, source_name, group_value, bucket_ts)`.execute(db);

  // Arguments: the time column, the group column. The transition tables are named by the trigger
  // (REFERENCING OLD TABLE AS rollup_old_rows [NEW TABLE AS rollup_new_rows]).
  await sql`
    CREATE FUNCTION telemetry_jobs.record_rollup_changes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET "TimeZone" = 'UTC'
    SET "DateStyle" = 'ISO, MDY'
    SET "IntervalStyle" = 'postgres'
    AS $fn$
    DECLARE
      v_rows text;
    BEGIN
      IF TG_LEVEL <> 'STATEMENT' OR TG_WHEN <> 'AFTER' OR TG_OP NOT IN ('UPDATE', 'DELETE') OR TG_NARGS <> 2 THEN
        RAISE EXCEPTION 'telemetry_jobs.record_rollup_changes() is an AFTER UPDATE or AFTER DELETE statement trigger with two arguments (time column, group column)';
      END IF;
      v_rows := format('SELECT o.%1$I AS g, o.%2$I AS t FROM rollup_old_rows o', TG_ARGV[1], TG_ARGV[0]);
      IF TG_OP = 'UPDATE' THEN
        v_rows := v_rows || format(' UNION ALL SELECT n.%1$I, n.%2$I FROM rollup_new_rows n', TG_ARGV[1], TG_ARGV[0]);
      END IF;
      -- TimeZone is UTC here: date_trunc cuts UTC hours of a timestamptz, and a timestamp column
      -- (UTC wall-clock time) becomes the same instant when stored as timestamptz.
      EXECUTE format(
        'INSERT INTO telemetry_jobs.rollup_changes (source_schema, source_name, group_value, bucket_ts)
         SELECT DISTINCT $1, $2, x.g::text, date_trunc(''hour'', x.t)
           FROM (%s) AS x
          WHERE x.g IS NOT NULL AND x.t IS NOT NULL', v_rows)
        USING TG_TABLE_SCHEMA::text, TG_TABLE_NAME::text;
      RETURN NULL;
    END
    $fn$`.execute(db);
  await sql`REVOKE EXECUTE ON FUNCTION telemetry_jobs.record_rollup_changes() FROM PUBLIC`.execute(db);

  // The real-time read also serves from raw rows the final hours with change records not yet
  // consumed (the rest is migration 0004's function as it was).
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
  // The triggers rollup-hourly installed depend on the function.
  await sql`
    DO $do$
    DECLARE r record;
    BEGIN
      FOR r IN SELECT t.tgname, n.nspname, c.relname
                 FROM pg_catalog.pg_trigger t
                 JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE t.tgfoid = 'telemetry_jobs.record_rollup_changes()'::pg_catalog.regprocedure
      LOOP
        EXECUTE format('DROP TRIGGER %I ON %I.%I', r.tgname, r.nspname, r.relname);
      END LOOP;
    END
    $do$`.execute(db);
  await sql`
    CREATE OR REPLACE FUNCTION public.telemetry_hourly_series(
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
  await sql`DROP FUNCTION telemetry_jobs.record_rollup_changes()`.execute(db);
  await sql`DROP TABLE telemetry_jobs.rollup_changes`.execute(db);
}
