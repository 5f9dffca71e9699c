// A run that ended without finishing its job_runs row (SIGKILL, out of memory, a lost instance) is
// marked 'abandoned' by the next run of the same job once it holds that run's lock (proof that no
// process is still running it), instead of staying 'running' forever.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE telemetry_jobs.job_runs DROP CONSTRAINT job_runs_status_check`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'ok', 'skipped', 'failed', 'interrupted', 'refused', 'abandoned'))`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The earlier schema has no word for it: a run that did not end well is 'failed' there.
  await sql`UPDATE telemetry_jobs.job_runs SET status = 'failed' WHERE status = 'abandoned'`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs DROP CONSTRAINT job_runs_status_check`.execute(db);
  await sql`ALTER TABLE telemetry_jobs.job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('running', 'ok', 'skipped', 'failed', 'interrupted', 'refused'))`.execute(db);
}
