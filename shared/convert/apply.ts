// How `migrate convert` runs one step of the steps the step builders (step-*.ts) produce; the plan
// executor (shared/run/execute-plan.ts, through execute.ts) calls it for each step in turn. A
// "transaction" step runs in one transaction under lock_timeout, retried with backoff
// (shared/db/lock-retry.ts), so a step either happened or did not; a "concurrently" step runs
// outside any transaction (CREATE/DROP INDEX CONCURRENTLY cannot run inside one) and, if killed,
// leaves an INVALID index that the next run's plan drops and rebuilds. Long steps log progress
// while they run.
import { type Kysely, sql } from "kysely";
import { withLockRetry } from "../db/lock-retry.ts";
import { type Relation, relationOidSql } from "../db/relation.ts";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";
import type { Step } from "./step.ts";

export interface ExecContext {
  db: Kysely<DB>;
  log: Logger;
  /** lock_timeout of each attempt: the longest that inserts queue behind a waiting step. */
  lockTimeoutMs: number;
  /** Total time to keep retrying a step whose lock is not available. */
  retryBudgetMs: number;
  /** Relation named in "gave up" errors with its lock holders. */
  table: Relation;
  progressEveryMs: number;
  signal?: AbortSignal;
}

export interface StepOutcome {
  /** Rows affected by each statement, in order. */
  rows: number[];
  attempts: number;
  durationMs: number;
}

export class StepGuardError extends Error {
  override readonly name = "StepGuardError";
}

/** What --dry-run prints of a step: what it would do, what it locks, and every statement. */
export function logDryRun(log: Logger, step: Step): void {
  log.notice(`dry run: would ${step.title}`, { step: step.id, locks: step.locks, kind: step.kind });
  for (const s of step.statements) log.notice(`  ${s.sql};`, { step: step.id, sql: s.sql });
}

/** Runs one step, logging its title as it starts and its progress while it runs. */
export async function runStep(ctx: ExecContext, step: Step): Promise<StepOutcome> {
  ctx.log.info(`${step.title}`, { step: step.id, locks: step.locks });
  const started = Date.now();
  const stopProgress = step.progress ? startProgress(ctx, step, started) : () => {};
  try {
    const outcome =
      step.kind === "transaction" ? await runTransaction(ctx, step) : await runConcurrently(ctx, step);
    return { ...outcome, durationMs: Date.now() - started };
  } finally {
    stopProgress();
  }
}

async function runTransaction(ctx: ExecContext, step: Step): Promise<Omit<StepOutcome, "durationMs">> {
  const { result, attempts } = await withLockRetry(
    ctx.db,
    {
      lockTimeoutMs: ctx.lockTimeoutMs,
      budgetMs: ctx.retryBudgetMs,
      what: step.title,
      contended: ctx.table,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onRetry: ({ attempt, waitMs, error }) =>
        ctx.log.warn("lock not available within lock_timeout; rolled back, retrying", {
          step: step.id,
          attempt,
          waitMs,
          error: (error as Error).message,
        }),
    },
    async (trx) => {
      const rows: number[] = [];
      for (const s of step.statements) {
        // The planner's statement text, as --dry-run printed it: every identifier in it was
        // quoted part by part when it was built (shared/db/quote.ts).
        const r = await sql.raw(s.sql).execute(trx);
        const n = Number(r.numAffectedRows ?? BigInt(r.rows.length));
        if (s.expectRows !== undefined && n !== s.expectRows)
          throw new StepGuardError(
            s.guard
              ? `${step.id}: ${s.guard}; nothing of this step was changed`
              : `${step.id}: the conversion is not in the state this step expects (statement affected ${n} rows, expected ${s.expectRows}); ` +
                  "nothing of this step was changed. Run `migrate convert status` to see where it stands.",
          );
        rows.push(n);
      }
      return rows;
    },
  );
  return { rows: result, attempts };
}

async function runConcurrently(ctx: ExecContext, step: Step): Promise<Omit<StepOutcome, "durationMs">> {
  const rows = await ctx.db.connection().execute(async (conn) => {
    // A CONCURRENTLY build waits for every transaction older than itself; writers never wait for
    // it, and a timeout would throw the whole build away (leaving an INVALID index): no lock_timeout.
    await sql`SELECT set_config('lock_timeout', '0', false)`.execute(conn);
    try {
      const out: number[] = [];
      for (const s of step.statements) {
        // Statement text from the planner, quoted when it was built (see runTransaction).
        const r = await sql.raw(s.sql).execute(conn);
        out.push(Number(r.numAffectedRows ?? 0n));
      }
      return out;
    } finally {
      await sql`RESET lock_timeout`.execute(conn).catch(() => {});
    }
  });
  return { rows, attempts: 1 };
}

/** Logs progress of a long step every progressEveryMs, from pg_stat_progress_create_index for index builds. */
function startProgress(ctx: ExecContext, step: Step, started: number): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    void (async () => {
      const elapsedS = Math.round((Date.now() - started) / 1000);
      if (step.progress?.kind === "index") {
        const r = await sql<{
          phase: string;
          blocks_done: number;
          blocks_total: number;
          tuples_done: number;
          tuples_total: number;
        }>`
          SELECT phase, blocks_done::float8 AS blocks_done, blocks_total::float8 AS blocks_total,
                 tuples_done::float8 AS tuples_done, tuples_total::float8 AS tuples_total
            FROM pg_stat_progress_create_index WHERE relid = ${relationOidSql(ctx.table)}`
          .execute(ctx.db)
          .catch(() => ({ rows: [] }));
        const p = r.rows[0];
        if (stopped) return;
        const pct =
          p && p.blocks_total > 0
            ? Math.round((100 * p.blocks_done) / p.blocks_total)
            : p && p.tuples_total > 0
              ? Math.round((100 * p.tuples_done) / p.tuples_total)
              : null;
        ctx.log.info(
          `progress: ${step.progress.index}: ${p?.phase ?? "starting"}${pct !== null ? ` ${pct}%` : ""} after ${elapsedS} s`,
          {
            step: step.id,
            phase: p?.phase ?? null,
            percent: pct,
            elapsedS,
            ...(p ?? {}),
          },
        );
      } else if (!stopped) {
        // VALIDATE has no progress view: report time and the table's size instead.
        ctx.log.info(`progress: still validating after ${elapsedS} s (one sequential scan of the table)`, {
          step: step.id,
          elapsedS,
        });
      }
    })();
  }, ctx.progressEveryMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
