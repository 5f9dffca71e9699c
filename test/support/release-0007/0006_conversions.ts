// State of `migrate convert` runs, one row per converted table. The phase moves in the same
// transaction as the DDL it records (swap and revert are single transactions), so the row and the
// catalog always agree; `plan` keeps what revert needs that the catalog no longer shows after the
// swap (the original primary key, identity and owned sequences, the table's comment).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE telemetry_jobs.conversions (
      table_name text PRIMARY KEY,
      phase text NOT NULL CHECK (phase IN ('preparing', 'prepared', 'swapped', 'reverted', 'finalized')),
      -- the historical partition holds rows before this instant (FROM (MINVALUE) TO (boundary))
      boundary timestamptz NOT NULL,
      plan jsonb NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE telemetry_jobs.conversions`.execute(db);
}
