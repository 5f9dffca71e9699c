// A run that a safety guard refused (exit 2) is recorded as 'refused', not 'failed': an operator
// reading job_runs must tell "needs a decision (--force?)" from "broke".
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE telemetry_jobs.job_runs DROP CONSTRAINT job_runs_status_check`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'ok', 'skipped', 'failed', 'interrupted', 'refused'))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`UPDATE telemetry_jobs.job_runs SET status = 'failed' WHERE status = 'refused'`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs DROP CONSTRAINT job_runs_status_check`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'ok', 'skipped', 'failed', 'interrupted'))`.execute(db);
}
