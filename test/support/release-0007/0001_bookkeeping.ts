// The bookkeeping schema: every run and every action a run took (an audit trail of partitions
// created, rows rescued, and later detached or dropped, with their bounds and row counts).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE SCHEMA IF NOT EXISTS telemetry_jobs`.execute(db);
  await sql`
    CREATE TABLE telemetry_jobs.job_runs (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      job text NOT NULL,
      started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      finished_at timestamptz,
      status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'ok', 'skipped', 'failed', 'interrupted')),
      logical_now timestamptz NOT NULL,
      host text,
      execution text,
      args jsonb NOT NULL DEFAULT '{}',
      summary jsonb
    )`.execute(db);
  await sql`CREATE INDEX job_runs_job_started_idx ON telemetry_jobs.job_runs (job, started_at DESC)`.execute(
    db,
  );
  await sql`
    CREATE TABLE telemetry_jobs.job_actions (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      run_id bigint NOT NULL REFERENCES telemetry_jobs.job_runs (id) ON DELETE CASCADE,
      table_name text NOT NULL,
      kind text NOT NULL,
      partition_name text,
      range_from timestamptz,
      range_to timestamptz,
      rows bigint,
      outcome text NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
      error text,
      detail jsonb,
      started_at timestamptz NOT NULL,
      finished_at timestamptz NOT NULL
    )`.execute(db);
  await sql`CREATE INDEX job_actions_run_idx ON telemetry_jobs.job_actions (run_id)`.execute(db);
  await sql`CREATE INDEX job_actions_table_idx ON telemetry_jobs.job_actions (table_name, started_at DESC)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE telemetry_jobs.job_actions`.execute(db);
  await sql`DROP TABLE telemetry_jobs.job_runs`.execute(db);
}
