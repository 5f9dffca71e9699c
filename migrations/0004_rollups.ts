// Incremental hourly rollups (rollup-hourly job): the rollup state per target and shard layout, and
// the functions the rollup queries use.
//
// Change tracking of inserts: every raw row of a rollup source records the id of the transaction
// that inserted it (an ingest_xid xid8 column, DEFAULT pg_current_xact_id()). A run remembers the
// snapshot it saw (pg_current_snapshot()); the next run's new rows are exactly those whose
// ingest_xid was still running in that snapshot or started after it. The column and its index
// belong to the source table, not to this schema: the starter schema has them (migrations/starter),
// other tables gain them online (docs/runbooks/rollups.md).
//
// Releases up to 0007 also added that column to public.telemetry_points and created
// public.telemetry_hourly_series() here; both moved to the starter schema's migrations, and a
// database those releases migrated keeps them (product migration 0008 records them there).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
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
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP FUNCTION telemetry_jobs.shard_of(text, int)`.execute(db);
  await sql`DROP FUNCTION telemetry_jobs.numeric_metrics(jsonb)`.execute(db);
  await sql`DROP TABLE telemetry_jobs.rollup_watermarks`.execute(db);
}
