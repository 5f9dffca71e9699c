// The audit trail: one job_runs row per run, one job_actions row per action taken (or failed).
// Dry runs write nothing. A run that never finished its row (killed) is marked `abandoned` by a
// later run of its job.
import { type Kysely, sql } from "kysely";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import { RUN_ADVISORY_NAMESPACE, runLockKey } from "./advisory-lock.ts";

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

/** An earlier run of the job that ended without finishing its row: killed, or its host lost. */
export interface AbandonedRun {
  id: string;
  startedAt: Date;
  host: string | null;
  execution: string | null;
}

/**
 * Inserts the run's job_runs row in `session` (one connection) and, in the same statement, takes
 * the run's own lock there (see RUN_ADVISORY_NAMESPACE; held until the run is finished or the
 * session ends) and marks `abandoned` the job's runs still `running` whose lock it can take: no
 * session holds it, so no process runs them any more. That try-lock is transaction-scoped (it ends
 * with the statement); a run that does hold its lock (alive, e.g. another shard's) is left as it is.
 * The new row is not among them: the statement's snapshot does not see it.
 *
 * Its commit does not wait for the WAL flush (synchronous_commit off, for this transaction only:
 * set_config(..., true) in the statement itself, which PostgreSQL reads at commit). WAL is flushed
 * in order, so every later synchronous commit of the run (each action's audit row, finishRun)
 * makes this row durable first; a crash before any of them loses the row of a run that had done
 * nothing. Every run would otherwise pay that flush: a millisecond or more of its fixed cost.
 */
export async function startRun(
  session: Kysely<DB>,
  run: {
    job: string;
    logicalNow: Date;
    args: Record<string, unknown>;
    execution?: string | undefined;
    host: string;
  },
): Promise<{ runId: string; abandoned: AbandonedRun[] }> {
  const r = await sql<{ id: string; abandoned: (Omit<AbandonedRun, "startedAt"> & { startedAt: string })[] }>`
    WITH abandoned AS (
      UPDATE telemetry_jobs.job_runs r
         SET status = 'abandoned', finished_at = clock_timestamp()
       WHERE r.job = ${run.job} AND r.status = 'running'
         AND pg_try_advisory_xact_lock(${RUN_ADVISORY_NAMESPACE}, ${runLockKey(sql`r.id`)})
      RETURNING r.id, r.started_at, r.host, r.execution)
    INSERT INTO telemetry_jobs.job_runs (job, logical_now, host, execution, args, summary)
    VALUES (${run.job}, ${run.logicalNow}, ${run.host}, ${run.execution ?? null}, ${JSON.stringify(run.args)}, NULL)
    RETURNING id::text AS id,
              pg_advisory_lock(${RUN_ADVISORY_NAMESPACE}, ${runLockKey(sql`id`)}) AS locked,
              set_config('synchronous_commit', 'off', true) AS commit_mode,
              (SELECT coalesce(json_agg(json_build_object('id', a.id::text, 'startedAt', a.started_at,
                                                          'host', a.host, 'execution', a.execution)
                                        ORDER BY a.id), '[]')
                 FROM abandoned a) AS abandoned`.execute(session);
  const row = r.rows[0]!;
  return {
    runId: row.id,
    abandoned: row.abandoned.map((a) => ({ ...a, startedAt: new Date(a.startedAt) })),
  };
}

/**
 * Says which earlier runs of the job were found abandoned (killed, or their host lost, before they
 * finished): their actions audited so far are all they did, and this run finishes what they left.
 */
export function logAbandoned(log: Logger, job: string, runs: readonly AbandonedRun[]): void {
  if (runs.length === 0) return;
  const list = runs.map(
    (r) => `${r.id} (started ${r.startedAt.toISOString()}${r.host ? ` on ${r.host}` : ""})`,
  );
  log.warn(
    `${runs.length === 1 ? "an earlier run" : `${runs.length} earlier runs`} of ${job} ended without finishing (killed or lost): ${list.join(", ")}; marked abandoned`,
    {
      event: "runs_abandoned",
      abandonedRuns: runs.map((r) => ({ ...r, startedAt: r.startedAt.toISOString() })),
    },
  );
}

/**
 * Finishes the run's row and, in the same statement, releases the run's own lock in `session` (the
 * one startRun took it in).
 */
export async function finishRun(
  session: Kysely<DB>,
  runId: string,
  status: "ok" | "skipped" | "failed" | "interrupted" | "refused",
  summary: Record<string, unknown>,
): Promise<void> {
  await session
    .updateTable("telemetry_jobs.job_runs")
    .set({ status, finished_at: sql<Date>`clock_timestamp()` as never, summary: JSON.stringify(summary) })
    .where("id", "=", runId)
    .returning(
      sql<boolean>`pg_advisory_unlock(${RUN_ADVISORY_NAMESPACE}, ${runLockKey(sql`id`)})`.as("unlocked"),
    )
    .execute();
}

export async function recordAction(db: Kysely<DB>, runId: string, a: AuditAction): Promise<void> {
  await recordActions(db, runId, [a]);
}

/**
 * One row per action in one INSERT: actions that were applied together (in one transaction) are
 * audited with one commit, so one WAL flush, instead of one each.
 */
export async function recordActions(
  db: Kysely<DB>,
  runId: string,
  actions: readonly AuditAction[],
): Promise<void> {
  if (actions.length === 0) return;
  await db
    .insertInto("telemetry_jobs.job_actions")
    .values(
      actions.map((a) => ({
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
      })),
    )
    .execute();
}
