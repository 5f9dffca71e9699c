// The session that holds a run's advisory locks can die under it (the server ends its backend, a
// failover, a network drop): PostgreSQL then releases every lock the session held, while the work
// those locks guard runs on other connections and would go on. Another run can take the same
// tables from that moment, so this run must not start anything more: the loss stops it between
// actions as SIGTERM does (the executor reads the table's signal before each action), but it fails
// the run instead of interrupting it, and says why.
import { type Kysely, sql } from "kysely";
import type { DB } from "../db/schema.ts";
import type { Logger } from "../log/logger.ts";

/** Why the executor stopped a table's plan: its "interrupted" record carries this reason. */
export const LOCK_LOST_REASON =
  "the database session holding this run's locks was lost, so another run may work on this table now: no further action is started";

export interface LockSession {
  /** What each table's work is given: aborted by SIGTERM or SIGINT, or when the session is lost. */
  readonly signal: AbortSignal;
  /** The session's failure (the server's reason), once it is lost. */
  lost(): Error | undefined;
  /** The tables the loss left: stopped in their work, and not started; the runner fills them in. */
  readonly left: { readonly stopped: string[]; readonly notStarted: string[] };
}

/** Follows `stop` (the process's signal) and `lost` (holdSession's) as one signal. */
export function watchLockSession(stop: AbortSignal, lost: AbortSignal): LockSession {
  // The executor shows a string reason as it is; holdSession's reason is the Error, kept for the
  // run's record.
  const onLoss = new AbortController();
  const follow = () => onLoss.abort(LOCK_LOST_REASON);
  if (lost.aborted) follow();
  else lost.addEventListener("abort", follow, { once: true });
  return {
    signal: AbortSignal.any([stop, onLoss.signal]),
    lost: () => (lost.aborted ? asError(lost.reason) : undefined),
    left: { stopped: [], notStarted: [] },
  };
}

const asError = (reason: unknown): Error => (reason instanceof Error ? reason : new Error(String(reason)));

/**
 * The run's ERROR record for a lost lock session (what happened, what was left, and that the next
 * run takes it up: each action is audited once done, and every job plans from what the database
 * holds, so nothing needs repair by hand); then its job_runs row finished, on another connection
 * of `db`, where it would otherwise stay `running` until a later run marks it abandoned. The run
 * lock went with the session, so there is none to release; a later run that has already marked
 * the row `abandoned` keeps its word.
 */
export async function finishLostRun(
  spec: { readonly job: string; readonly db: Kysely<DB>; readonly log: Logger },
  lock: LockSession,
  runId: string | undefined,
  summary: Record<string, unknown>,
): Promise<void> {
  const { job, db, log } = spec;
  const error = lock.lost();
  const { stopped, notStarted } = lock.left;
  const left = [...stopped, ...notStarted];
  log.error(
    `${job} lost the database session holding its locks (${error?.message}); PostgreSQL released the locks with it, so work stopped before the next action. Actions done so far are audited; the next run of ${job} picks up ${left.length > 0 ? `the rest of ${left.join(", ")}` : "from here"}`,
    { event: "lock_session_lost", error, tablesStopped: stopped, tablesNotStarted: notStarted },
  );
  if (runId === undefined) return;
  await db
    .updateTable("telemetry_jobs.job_runs")
    .set({
      status: "failed",
      finished_at: sql<Date>`clock_timestamp()` as never,
      summary: JSON.stringify(summary),
    })
    .where("id", "=", runId)
    .where("status", "=", "running")
    .execute();
}
