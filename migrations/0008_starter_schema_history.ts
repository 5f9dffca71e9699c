// The starter telemetry schema has its own migration history (telemetry_jobs.kysely_starter_migration)
// since it became optional. Releases up to 0007 made it as part of the product's migrations (0002,
// 0004, 0007): a database they migrated holds it, and its history must say so, or a later
// `migrate up --with-starter-schema` would try to create it again. This migration records, for each
// starter migration, that it is applied when what it makes is in the database as those releases
// made it:
//   starter_0001_tables          public.devices, and public.telemetry_points and
//                                public.telemetry_rollups_hourly, both partitioned;
//   starter_0002_ingest_xid      with that, telemetry_points.ingest_xid and its index;
//   starter_0003_hourly_series   with those, public.telemetry_hourly_series() in the version that
//                                reads telemetry_jobs.rollup_changes (release 0007's).
// It only reads the catalog outside telemetry_jobs and writes only the history table. On a new
// database it finds nothing and records nothing (the product's migrations made nothing in public),
// and an application's own tables of the same names (an unpartitioned telemetry_points, no
// rollup table) do not match. It can run again (after a `migrate down` of it) and records nothing
// twice. A database from a release before 0007 has the older read function: its starter_0003 is
// left pending, and `migrate up --with-starter-schema` replaces the function.
//
// The history table is created here in the shape the migrator itself gives it (the migrator creates
// it, if missing, before its first starter migration).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  const found = await sql<{ tables: boolean; ingest_xid: boolean; hourly_series: boolean }>`
    WITH t AS (
      SELECT to_regclass('public.devices') AS devices,
             to_regclass('public.telemetry_points') AS points,
             to_regclass('public.telemetry_rollups_hourly') AS rollups
    ), tables AS (
      SELECT coalesce((SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.devices) = 'r'
                      AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.points) = 'p'
                      AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.rollups) = 'p', false) AS ok,
             t.points
        FROM t
    ), ingest AS (
      SELECT tables.ok
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = tables.points AND a.attname = 'ingest_xid' AND NOT a.attisdropped
                            AND a.atttypid = 'pg_catalog.xid8'::pg_catalog.regtype)
             AND to_regclass('public.telemetry_points_ingest_xid_idx') IS NOT NULL AS ok
        FROM tables
    )
    SELECT tables.ok AS tables, ingest.ok AS ingest_xid,
           ingest.ok AND coalesce((
             SELECT p.prosrc LIKE '%telemetry_jobs.rollup_changes%'
               FROM pg_catalog.pg_proc p
              WHERE p.oid = to_regprocedure('public.telemetry_hourly_series(text, text, timestamptz, timestamptz)')
           ), false) AS hourly_series
      FROM tables, ingest`.execute(db);
  const row = found.rows[0]!;
  const applied = [
    ...(row.tables ? ["starter_0001_tables"] : []),
    ...(row.ingest_xid ? ["starter_0002_ingest_xid"] : []),
    ...(row.hourly_series ? ["starter_0003_hourly_series"] : []),
  ];
  if (applied.length === 0) return;
  await sql`
    CREATE TABLE IF NOT EXISTS telemetry_jobs.kysely_starter_migration (
      name varchar(255) NOT NULL PRIMARY KEY,
      timestamp varchar(255) NOT NULL
    )`.execute(db);
  for (const name of applied) {
    await sql`
      INSERT INTO telemetry_jobs.kysely_starter_migration (name, timestamp)
      VALUES (${name}, to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
      ON CONFLICT (name) DO NOTHING`.execute(db);
  }
}

// The records stay: they describe the starter schema, which is still there.
export async function down(_db: Kysely<unknown>): Promise<void> {}
