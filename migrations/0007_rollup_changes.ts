// Change tracking for UPDATE and DELETE of raw rows (inserts carry ingest_xid, migration 0004).
// Releases up to 0007 also replaced public.telemetry_hourly_series() here, to read the change
// records; that function is now the starter schema's (migrations/starter).
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
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The triggers rollup-hourly installed on rollup sources depend on the function: they go with it
  // (the only objects outside telemetry_jobs a migration touches, and only on the way down).
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
  await sql`DROP FUNCTION telemetry_jobs.record_rollup_changes()`.execute(db);
  await sql`DROP TABLE telemetry_jobs.rollup_changes`.execute(db);
}
