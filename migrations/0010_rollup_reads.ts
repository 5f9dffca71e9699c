// The never-stale hourly read for every rollup target, not only the starter table's.
//
// telemetry_jobs.rollup_reads holds one row per rollup target: where its raw rows live and how
// they are shaped (source relation, time column and whether it is a `timestamp without time zone`
// read as UTC, source group column, target group column, metrics as one jsonb column or as a list
// of numeric columns), and the exact text rollup-hourly keys rollup_watermarks by (the policy's
// rollup target as written there, stored as is: it is never rebuilt from the parts). rollup-hourly
// writes the row on its runs (shared/rollups/registry.ts).
//
// telemetry_jobs.hourly_series(target schema, target name, group, metric key, from, to) reads the
// target's registry row and serves each whole hour touching [from, to):
// - from the rollup table, when the hour is final for every shard of a complete task layout, no
//   rebuild of it is pending, none of the group's raw rows in it is newer than what rollup-hourly
//   rolled up (not visible in every shard's saved snapshot, by ingest_xid), and no change record
//   (an UPDATE or DELETE not rolled up yet) names it;
// - otherwise as an aggregate of the raw rows, with the rule rollup-hourly aggregates by: finite
//   numbers only, rows whose group is NULL in no series.
// The group is given as text, the form the target and the change records hold; raw rows match it
// by the source column's own equality (the text cast to the column's type, so an index on the
// column serves), as rollup-hourly groups them. Text that is not a value of that type, or not in
// the form such a value prints as, matches no raw row (and no rollup row either).
//
// Its result does not depend on the caller's session:
// - search_path is pg_catalog, pg_temp, and every relation, column and type in the statements it
//   builds is schema-qualified or quoted with format('%I'); values travel as EXECUTE ... USING
//   parameters, never as SQL text;
// - the hours are UTC hours whatever the caller's TimeZone: a timestamptz column is truncated with
//   date_trunc('hour', t, 'UTC'); a `timestamp without time zone` column (UTC wall-clock time) is
//   compared with bounds converted to UTC wall-clock time in the function (AT TIME ZONE 'UTC'), so
//   its index and partition bounds still apply, and its hour becomes an instant with
//   date_trunc('hour', t) AT TIME ZONE 'UTC'. No step converts between the two through the
//   session's zone;
// - TimeZone, DateStyle, IntervalStyle and extra_float_digits are still fixed for the call (SET
//   clauses, restored on return) to what rollup-hourly's sessions use: the group text is parsed by
//   the group column's input function and printed again to check that it is in the form the job
//   stores, and both read and print dates, times, intervals and floats by those settings.
// It runs with the caller's privileges (not SECURITY DEFINER): the caller needs SELECT on the
// source, the target and telemetry_jobs' rollup state, as for the starter read.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE telemetry_jobs.rollup_reads (
      target_schema text NOT NULL,
      target_name text NOT NULL,
      -- rollup_watermarks.target of this target: the policy's text, exactly as the job keys it
      watermark_key text NOT NULL,
      source_schema text NOT NULL,
      source_name text NOT NULL,
      time_column text NOT NULL,
      -- true: the time column is timestamp without time zone, holding UTC wall-clock time
      time_is_utc_timestamp boolean NOT NULL,
      -- the source column rows are grouped by, and the target's (text) column that holds it
      group_column text NOT NULL,
      target_group_column text NOT NULL,
      -- the metrics: one jsonb column of key -> value, or numeric columns named as their keys
      metrics_jsonb text,
      metrics_columns text[],
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (target_schema, target_name),
      CONSTRAINT rollup_reads_one_metrics_source CHECK ((metrics_jsonb IS NULL) <> (metrics_columns IS NULL)),
      CONSTRAINT rollup_reads_metrics_columns_check CHECK (
        metrics_columns IS NULL
        OR (cardinality(metrics_columns) >= 1 AND array_position(metrics_columns, NULL) IS NULL))
    )`.execute(db);

  await sql`
    CREATE FUNCTION telemetry_jobs.hourly_series(
      p_target_schema text, p_target_name text, p_group text, p_metric_key text,
      p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (bucket_ts timestamptz, sample_count bigint, sum double precision,
                   min double precision, max double precision, avg double precision, source text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    SET "TimeZone" = 'UTC'
    SET "DateStyle" = 'ISO, MDY'
    SET "IntervalStyle" = 'postgres'
    SET extra_float_digits = 3
    AS $fn$
    DECLARE
      v_reg telemetry_jobs.rollup_reads%ROWTYPE;
      v_from timestamptz := date_trunc('hour', p_from, 'UTC');
      -- whole hours only: an hour that p_to cuts is returned whole, from either source
      v_to timestamptz := date_trunc('hour', p_to - interval '1 microsecond', 'UTC') + interval '1 hour';
      v_final_before timestamptz;
      v_min_xmin xid8;
      v_bf_from timestamptz;
      v_bf_to timestamptz;
      v_snapshots pg_snapshot[];
      v_group_type text;
      v_group_matches boolean := true;
      v_metric text;
      v_hour text;
      v_lo text;
      v_hi text;
      v_final text;
      v_bf_lo text;
      v_bf_hi text;
    BEGIN
      SELECT * INTO v_reg FROM telemetry_jobs.rollup_reads r
       WHERE r.target_schema = p_target_schema AND r.target_name = p_target_name;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'no rollup read is registered for target %.%: rollup-hourly registers each rollup target of its policy on its runs',
                        quote_ident(p_target_schema), quote_ident(p_target_name)
          USING ERRCODE = 'undefined_object',
                HINT = 'Check the target''s schema and name, or run rollup-hourly for the table that rolls up into this target.';
      END IF;

      -- Only task layouts whose every shard has saved its state: a shard that has not run yet has
      -- rolled up nothing, and its groups must come from raw rows.
      SELECT min(w.final_before), array_agg(w.seen),
             min(w.backfill_next) FILTER (WHERE w.backfill_next < w.backfill_to),
             max(w.backfill_to) FILTER (WHERE w.backfill_next < w.backfill_to)
        INTO v_final_before, v_snapshots, v_bf_from, v_bf_to
        FROM telemetry_jobs.rollup_watermarks w
       WHERE w.target = v_reg.watermark_key
         AND (SELECT count(*) FROM telemetry_jobs.rollup_watermarks o
               WHERE o.target = w.target AND o.shard_count = w.shard_count) = w.shard_count;
      -- (min() over xid8 exists only from PostgreSQL 16)
      SELECT pg_snapshot_xmin(x) INTO v_min_xmin FROM unnest(v_snapshots) AS x ORDER BY 1 LIMIT 1;
      IF v_final_before IS NULL THEN
        v_final_before := '-infinity';
      END IF;

      -- The group column's type without its typmod (a cast to varchar(n) or char(n) would cut the
      -- text; typmod -1 names char as bpchar, not as character, which means char(1)). format_type()
      -- qualifies and quotes a type not visible from pg_catalog.
      SELECT format_type(a.atttypid, -1) INTO v_group_type
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = v_reg.source_schema AND c.relname = v_reg.source_name
         AND a.attname = v_reg.group_column AND a.attnum > 0 AND NOT a.attisdropped;
      IF v_group_type IS NULL THEN
        RAISE EXCEPTION 'rollup source %.% of target %.% has no column %', quote_ident(v_reg.source_schema),
                        quote_ident(v_reg.source_name), quote_ident(p_target_schema),
                        quote_ident(p_target_name), quote_ident(v_reg.group_column)
          USING ERRCODE = 'undefined_column';
      END IF;
      -- The group as rollup-hourly writes it is the column's value as text (in its sessions'
      -- settings, which this function has too). Text that is no value of the type, or not in the
      -- form the value prints as ('01' for the integer 1), names no group: it matches no raw row,
      -- as it matches no rollup row.
      BEGIN
        EXECUTE format('SELECT $1::%s::text = $1', v_group_type) INTO v_group_matches USING p_group;
      EXCEPTION WHEN data_exception THEN
        v_group_matches := false;
      END;

      IF v_reg.metrics_jsonb IS NOT NULL THEN
        v_metric := format('telemetry_jobs.numeric_metrics(s.%I) AS m (key, value)', v_reg.metrics_jsonb);
      ELSE
        -- NULL, NaN and infinities are not measurements (rollup-hourly's rule).
        SELECT format('(SELECT v.key, v.value FROM (VALUES %s) AS v (key, value)
                         WHERE v.value IS NOT NULL AND v.value NOT IN (''NaN'', ''Infinity'', ''-Infinity'')) AS m',
                      string_agg(format('(%L::text, s.%I::double precision)', c.col, c.col), ', ' ORDER BY c.i))
          INTO v_metric
          FROM unnest(v_reg.metrics_columns) WITH ORDINALITY AS c (col, i);
      END IF;

      -- Hours as instants, bounds in the time column's own type ($n below: USING order).
      IF v_reg.time_is_utc_timestamp THEN
        v_hour := format('(date_trunc(''hour'', s.%I) AT TIME ZONE ''UTC'')', v_reg.time_column);
        v_lo := '$10'; v_hi := '$11'; v_final := '$12'; v_bf_lo := '$13'; v_bf_hi := '$14';
      ELSE
        v_hour := format('date_trunc(''hour'', s.%I, ''UTC'')', v_reg.time_column);
        v_lo := '$3'; v_hi := '$4'; v_final := '$5'; v_bf_lo := '$8'; v_bf_hi := '$9';
      END IF;

      RETURN QUERY EXECUTE format($q$
        WITH stale AS (
          -- final hours holding rows the job has not rolled up yet
          SELECT %1$s AS h
            FROM %2$I.%3$I AS s
           WHERE s.ingest_xid >= $6
             AND %4$s
             AND s.%5$I >= %6$s AND s.%5$I < least(%7$s, %8$s)
             AND EXISTS (SELECT 1 FROM unnest($7) AS snap WHERE NOT pg_visible_in_snapshot(s.ingest_xid, snap))
          UNION
          -- final hours where rows were updated or deleted since the job last recomputed them: a
          -- change record disappears in the transaction that recomputes its bucket, so one that
          -- is visible here has not been rolled up
          SELECT c.bucket_ts
            FROM telemetry_jobs.rollup_changes c
           WHERE c.source_schema = $15 AND c.source_name = $16
             AND c.group_value = $1
             AND c.bucket_ts >= $3 AND c.bucket_ts < least($4, $5)
        ),
        raw AS (
          SELECT %1$s AS h, m.value
            FROM %2$I.%3$I AS s
            CROSS JOIN LATERAL %9$s
           WHERE %4$s AND m.key = $2
             AND s.%5$I >= %6$s AND s.%5$I < %7$s
             AND (s.%5$I >= %8$s
                  OR coalesce(s.%5$I >= %10$s AND s.%5$I < %11$s, false)
                  OR %1$s IN (SELECT h FROM stale))
        )
        SELECT r.bucket_ts, r.sample_count::bigint, r.sum::double precision, r.min::double precision,
               r.max::double precision, r.avg::double precision, 'rollup'::text
          FROM %12$I.%13$I AS r
         WHERE r.%14$I = $1 AND r.metric_key = $2
           AND r.bucket_ts >= $3 AND r.bucket_ts < least($4, $5)
           AND NOT coalesce(r.bucket_ts >= $8 AND r.bucket_ts < $9, false)
           AND r.bucket_ts NOT IN (SELECT h FROM stale)
        UNION ALL
        SELECT raw.h, count(*), sum(raw.value), min(raw.value), max(raw.value), avg(raw.value), 'raw'::text
          FROM raw GROUP BY raw.h
        ORDER BY 1
      $q$,
        v_hour, v_reg.source_schema, v_reg.source_name,
        CASE WHEN coalesce(v_group_matches, false) THEN format('s.%I = $1::%s', v_reg.group_column, v_group_type) ELSE 'false' END,
        v_reg.time_column, v_lo, v_hi, v_final, v_metric, v_bf_lo, v_bf_hi,
        v_reg.target_schema, v_reg.target_name, v_reg.target_group_column)
      USING p_group, p_metric_key, v_from, v_to, v_final_before, v_min_xmin, v_snapshots, v_bf_from, v_bf_to,
            v_from AT TIME ZONE 'UTC', v_to AT TIME ZONE 'UTC', v_final_before AT TIME ZONE 'UTC',
            v_bf_from AT TIME ZONE 'UTC', v_bf_to AT TIME ZONE 'UTC',
            v_reg.source_schema, v_reg.source_name;
    END
    $fn$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION telemetry_jobs.hourly_series(text, text, text, text, timestamptz, timestamptz)`.execute(
    db,
  );
  await sql`DROP TABLE telemetry_jobs.rollup_reads`.execute(db);
}
