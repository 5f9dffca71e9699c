// Every DDL runs in its own short transaction under SET LOCAL lock_timeout, and is retried with
// exponential backoff and full jitter while a total time budget lasts. A DDL that waits for a lock
// makes every later lock request on that table queue behind it; lock_timeout caps how long
// ingestion can be held up by our waiting, and the budget caps how long the job keeps trying.
import { type Kysely, sql, type Transaction } from "kysely";
import { type Relation, relationOidSql } from "./relation.ts";
import { isRetryableLockError, sqlState } from "./sqlstate.ts";

export interface LockRetryOptions {
  lockTimeoutMs: number;
  budgetMs: number;
  /** What the transaction is for, used in messages ("attach public.t_p202611"). */
  what: string;
  /** Relation whose lock holders are named when the budget runs out. */
  contended?: Relation;
  onRetry?: (info: { attempt: number; waitMs: number; error: unknown }) => void;
  signal?: AbortSignal;
  /** For tests: a deterministic random source. */
  random?: () => number;
}

export const BACKOFF_BASE_MS = 100;
export const BACKOFF_CAP_MS = 5_000;

export class LockBudgetExceededError extends Error {
  override readonly name = "LockBudgetExceededError";
}

/** Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt));
}

export async function withLockRetry<DB, T>(
  db: Kysely<DB>,
  options: LockRetryOptions,
  work: (trx: Transaction<DB>) => Promise<T>,
): Promise<{ result: T; attempts: number }> {
  return await retryOnLockErrors(db, options, () =>
    db.transaction().execute(async (trx) => {
      await sql`SELECT set_config('lock_timeout', ${`${options.lockTimeoutMs}ms`}, true)`.execute(trx);
      return await work(trx);
    }),
  );
}

/**
 * The same loop for a statement PostgreSQL refuses inside a transaction block (DETACH PARTITION
 * ... CONCURRENTLY): each attempt runs on one connection with lock_timeout set for the session and
 * reset afterwards. Such a statement may commit part of its work before it fails, so `advice`
 * (what the next run does about that) replaces the "rolled back" sentence of the final error.
 */
export async function withLockRetryOnConnection<DB, T>(
  db: Kysely<DB>,
  options: LockRetryOptions & { advice: string },
  work: (conn: Kysely<DB>) => Promise<T>,
): Promise<{ result: T; attempts: number }> {
  return await retryOnLockErrors(db, options, () =>
    db.connection().execute(async (conn) => {
      await sql`SELECT set_config('lock_timeout', ${`${options.lockTimeoutMs}ms`}, false)`.execute(conn);
      try {
        return await work(conn);
      } finally {
        await sql`RESET lock_timeout`.execute(conn).catch(() => {});
      }
    }),
  );
}

const ROLLED_BACK =
  "Whatever this step had begun was rolled back; the next run retries it and finishes any earlier step that completed.";

async function retryOnLockErrors<DB, T>(
  db: Kysely<DB>,
  options: LockRetryOptions & { advice?: string },
  attemptOnce: () => Promise<T>,
): Promise<{ result: T; attempts: number }> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return { result: await attemptOnce(), attempts: attempt };
    } catch (error) {
      if (!isRetryableLockError(error)) throw error;
      const waitMs = backoffMs(attempt, options.random);
      const elapsed = Date.now() - started;
      if (elapsed + waitMs + options.lockTimeoutMs > options.budgetMs || options.signal?.aborted) {
        const holders = options.contended ? await describeLockHolders(db, options.contended) : "";
        throw new LockBudgetExceededError(
          `${options.what}: gave up after ${attempt} attempts in ${Math.round(elapsed / 1000)} s ` +
            `(lock_timeout ${options.lockTimeoutMs} ms, retry budget ${options.budgetMs} ms; last error ${sqlState(error)}: ` +
            `${(error as Error).message}). Another session holds a conflicting lock, or an old snapshot a concurrent step waits for${holders ? `; sessions holding locks on the table: ${holders}` : ""}. ` +
            `${options.advice ?? ROLLED_BACK} If this repeats, find the long transaction ` +
            "(pg_stat_activity) or raise retryBudgetMs.",
          { cause: error },
        );
      }
      options.onRetry?.({ attempt, waitMs, error });
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
}

/** "pid 123 (idle in transaction for 41 s, AccessExclusiveLock): LOCK TABLE ..." for each holder. */
export async function describeLockHolders<DB>(db: Kysely<DB>, relation: Relation): Promise<string> {
  try {
    const r = await sql<{
      pid: number;
      mode: string;
      state: string | null;
      seconds: number | null;
      query: string | null;
    }>`
      SELECT l.pid, string_agg(DISTINCT l.mode, ', ') AS mode, min(a.state) AS state,
             extract(epoch FROM clock_timestamp() - min(a.xact_start))::int AS seconds,
             regexp_replace(left(min(a.query), 120), '[[:space:]]+', ' ', 'g') AS query
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       -- Relation oids are per database: another database's lock on the same oid is not ours.
       WHERE l.granted AND l.pid <> pg_backend_pid()
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.relation IN (SELECT ${relationOidSql(relation)} UNION ALL
                            SELECT inhrelid FROM pg_inherits WHERE inhparent = ${relationOidSql(relation)})
       GROUP BY l.pid  -- one line per session, however many of the relations it locks
       ORDER BY min(a.xact_start) NULLS LAST LIMIT 5`.execute(db);
    return r.rows
      .map((h) => `pid ${h.pid} (${h.state ?? "?"} for ${h.seconds ?? "?"} s, ${h.mode}): ${h.query ?? ""}`)
      .join("; ");
  } catch {
    return "";
  }
}
