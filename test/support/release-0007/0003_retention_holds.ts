// Retention holds: keep a partition past its cutoff (an investigation, a legal hold) until a date.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE telemetry_jobs.retention_holds (
      partition_name text PRIMARY KEY CHECK (partition_name ~ '^[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*$'),
      hold_until timestamptz NOT NULL,
      reason text NOT NULL CHECK (length(reason) > 0),
      created_at timestamptz NOT NULL DEFAULT now(),
      created_by text NOT NULL DEFAULT current_user
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE telemetry_jobs.retention_holds`.execute(db);
}
