// Change tracking of inserts on the starter table: every raw row records the id of the transaction
// that inserted it (ingest_xid xid8 DEFAULT pg_current_xact_id()). rollup-hourly remembers the
// snapshot each run saw (pg_current_snapshot()); the next run's new rows are exactly those whose
// ingest_xid was still running in that snapshot or started after it: an index range scan, cost
// proportional to new rows, and no waiting on anyone's transaction. The index is on
// (ingest_xid, ts): a run looks for new rows only in the hours it must recompute bucket by bucket,
// and the time is checked in the index (an in-flight writer's xid stays in the saved snapshot until
// it ends). Adding a nullable column and then a default is catalog-only (no rewrite).
//
// Releases up to 0007 did this in the product's migration 0004_rollups.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE public.telemetry_points ADD COLUMN ingest_xid xid8`.execute(db);
  await sql`ALTER TABLE public.telemetry_points ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()`.execute(
    db,
  );
  // A plain CREATE INDEX on the parent: right for the starter table, new and empty here. A
  // populated table gains the index per partition, CONCURRENTLY, then attached
  // (docs/runbooks/rollups.md).
  await sql`CREATE INDEX telemetry_points_ingest_xid_idx ON public.telemetry_points (ingest_xid, ts)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX public.telemetry_points_ingest_xid_idx`.execute(db);
  await sql`ALTER TABLE public.telemetry_points DROP COLUMN ingest_xid`.execute(db);
}
