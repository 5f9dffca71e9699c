// The audit trail: one job_runs row per run, one job_actions row per action taken (or failed).
// Dry runs write nothing.
import { type Kysely, sql } from "kysely";
import { relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";

export interface AuditAction {
  table: string;
  kind: string;
  partition?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
  rows?: number | undefined;
  outcome: "ok" | "failed" | "skipped";
  error?: string | undefined;
  detail?: Record<string, unknown> | undefined;
  startedAt: Date;
  finishedAt: Date;
}

export async function bookkeepingReady(db: Kysely<DB>): Promise<boolean> {
  const actions = relationOidSql({ schema: "telemetry_jobs", name: "job_actions" });
  const r = await sql<{ ok: boolean }>`SELECT ${actions} IS NOT NULL AS ok`.execute(db);
  return r.rows[0]?.ok === true;
}

export async function startRun(
  db: Kysely<DB>,
  run: {
    job: string;
    logicalNow: Date;
    args: Record<string, unknown>;
    execution?: string | undefined;
    host: string;
  },
): Promise<string> {
  const row = await db
    .insertInto("telemetry_jobs.job_runs")
    .values({
      job: run.job,
      logical_now: run.logicalNow,
      host: run.host,
      execution: run.execution ?? null,
      args: JSON.stringify(run.args),
      summary: null,
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  return String(row.id);
}

export async function finishRun(
  db: Kysely<DB>,
  runId: string,
  status: "ok" | "skipped" | "failed" | "interrupted" | "refused",
  summary: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable("telemetry_jobs.job_runs")
    .set({ status, finished_at: sql<Date>`clock_timestamp()` as never, summary: JSON.stringify(summary) })
    .where("id", "=", runId)
    .execute();
}

export async function recordAction(db: Kysely<DB>, runId: string, a: AuditAction): Promise<void> {
  await db
    .insertInto("telemetry_jobs.job_actions")
    .values({
      run_id: runId,
      table_name: a.table,
      kind: a.kind,
      partition_name: a.partition ?? null,
      range_from: a.from ?? null,
      range_to: a.to ?? null,
      rows: a.rows ?? null,
      outcome: a.outcome,
      error: a.error ?? null,
      detail: a.detail ? JSON.stringify(a.detail) : null,
      started_at: a.startedAt,
      finished_at: a.finishedAt,
    })
    .execute();
}
