// What every row-delete batch shares, whichever way it picks its rows (block ranges in
// delete-rows.ts, time order in delete-in-time-order.ts): its own short transaction that first
// checks for a hold placed since the run planned, the progress log, and the warning when the
// deletes stop before the end.
import { type Kysely, sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { displayRelation } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import { type RetentionContext, retryOptions } from "./context.ts";
import type { RetentionAction } from "./plan.ts";

export type DeleteRows = Extract<RetentionAction, { kind: "delete_rows" }>;

export interface DeleteProgress {
  deleted: number;
  batches: number;
  started: number;
  lastLog: number;
}

/** Why a batch did not run: a hold placed since the run planned, or the index it reads was dropped. */
export type BatchStop = "held" | "index gone";

/**
 * Runs one batch's statements (`work`) in a transaction of its own, under the policy's
 * lock_timeout and retries: what `work` returns, or why it did not run. "held": a hold on the
 * relation was placed since the run planned (a hold keeps all of a relation's rows; it applies from
 * the next batch on). With `byIndex` (the oid of the index a batch in time order reads): "index
 * gone" when that index was dropped or made invalid since (a REINDEX CONCURRENTLY does both: the
 * caller looks again), and sequential scans are off for the rest of the batch, since with
 * statistics from before earlier deletes the planner can take a batch's range for much of the
 * table and read all of it, every batch. DateStyle is ISO for the batch: a time a batch in time
 * order reads as text and passes back must read back as the same instant, and ISO writes the
 * offset in digits. The job's sessions are ISO already; a session whose DateStyle is SQL writes
 * zone abbreviations, which PostgreSQL 14 and 15 read back by their default meaning (Kolkata's IST
 * as Israel's: 3 h 30 min off).
 */
export async function inDeleteTransaction<T>(
  ctx: RetentionContext,
  action: DeleteRows,
  work: (trx: Kysely<DB>) => Promise<T>,
  byIndex?: number,
): Promise<T | BatchStop> {
  const { result } = await withLockRetry(
    ctx.db,
    retryOptions(ctx, `delete expired rows of ${displayRelation(action.relation)}`),
    async (trx) => {
      // A batch lost in a crash is simply deleted again by the next run, so its commit need
      // not wait for the WAL flush. The same round trip reads whether a hold was placed since.
      const first = await sql<{ held: boolean; index_ok: boolean }>`
        SELECT set_config('synchronous_commit', 'off', true) AS synchronous_commit,
               set_config('DateStyle', 'ISO, MDY', true) AS date_style,
               ${byIndex === undefined ? sql`NULL` : sql`set_config('enable_seqscan', 'off', true)`} AS seqscan,
               EXISTS (SELECT 1 FROM telemetry_jobs.retention_holds h
                        WHERE h.partition_name = ${displayRelation(action.relation)}
                          AND h.hold_until > ${ctx.now}) AS held,
               ${
                 byIndex === undefined
                   ? sql`true`
                   : sql`EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indexrelid = ${byIndex}::oid AND indisvalid)`
               } AS index_ok`.execute(trx);
      if (first.rows[0]?.held) return "held" as const;
      if (!first.rows[0]?.index_ok) return "index gone" as const;
      return await work(trx);
    },
  );
  return result;
}

/** Every 5 s: rows deleted so far, the rate, what is left, and where the deletes are (`at`). */
export function logDeleteProgress(
  ctx: RetentionContext,
  action: DeleteRows,
  progress: DeleteProgress,
  at: Record<string, unknown>,
): void {
  const now = Date.now();
  if (now - progress.lastLog <= 5_000) return;
  progress.lastLog = now;
  ctx.log.info("deleting expired rows", {
    relation: displayRelation(action.relation),
    rowsDeleted: progress.deleted,
    rowsPerSecond: Math.round(progress.deleted / ((now - progress.started) / 1000)),
    remainingEstimate: Math.max(0, action.rows - progress.deleted),
    batches: progress.batches,
    ...at,
  });
}

/** The warning when the deletes stopped before the end: see BatchStop; "stopped": at the time budget or SIGTERM. */
export function warnDeletesStopped(
  ctx: RetentionContext,
  action: DeleteRows,
  progress: DeleteProgress,
  why: BatchStop | "stopped",
  at: Record<string, unknown> = {},
): void {
  const shown = displayRelation(action.relation);
  const fields = {
    relation: shown,
    rowsDeleted: progress.deleted,
    remainingEstimate: Math.max(0, action.rows - progress.deleted),
    ...at,
  };
  if (why === "held") {
    ctx.log.warn(
      `${shown} was held while its expired rows were being deleted: the deletes stopped, and the hold keeps the rest`,
      fields,
    );
  } else if (why === "index gone") {
    ctx.log.warn(
      `the index on the time column of ${shown} was dropped (or made invalid) while its expired rows were being deleted in time order: the deletes stopped; the next run deletes the rest by block range unless the index is back`,
      fields,
    );
  } else {
    ctx.log.warn("row deletes stopped at the time budget (or on request); the next run continues", fields);
  }
}
