// Overlapping runs of the same job on the same table are excluded by a session-level advisory lock,
// held on one dedicated connection for the duration of the work. A run that finds it taken skips
// that table (and exits 0): the other run is doing the work. The same session holds the run's own
// lock for as long as the run lasts (RUN_ADVISORY_NAMESPACE), so that a later run can tell a run
// that is still going from one that was killed.
import { type Expression, type Kysely, type RawBuilder, sql } from "kysely";
import { holdSession } from "../db/connect.ts";
import type { DB } from "../db/schema.ts";

/** Both halves of the two-int advisory key: a fixed namespace, and a hash of (job, table). */
export const ADVISORY_NAMESPACE = 0x746a; // "tj"

export type LockedResult<T> = { acquired: true; value: T } | { acquired: false; busy?: string };

/**
 * All of the keys ("job:table") or none: migrate convert holds partition-manager's and retention's
 * keys of its table too, so that neither works on the table while it changes shape.
 *
 * The keys are held on a session of their own (holdSession), which the server can end under the
 * work (a failover, pg_terminate_backend): PostgreSQL then releases the locks, and another run may
 * take the table. `work` is given a signal aborted at that moment, to stop before its next step;
 * once it has returned (or thrown), a loss that came while it ran is thrown as a
 * LockSessionLostError, so that the command fails saying why, whatever the work made of the
 * signal. A loss after the work, while the keys are released, releases them all the same: the
 * work's result stands.
 */
export async function withAdvisoryLocks<T>(
  db: Kysely<DB>,
  keys: readonly string[],
  work: (lost: AbortSignal) => Promise<T>,
): Promise<LockedResult<T>> {
  if (keys.length === 0) return { acquired: true, value: await work(new AbortController().signal) };
  return await holdSession(db, async (session, lost) => {
    let lostWhileWorking: { reason: unknown } | undefined;
    const watched = async () => {
      try {
        return await work(lost);
      } finally {
        if (lost.aborted) lostWhileWorking = { reason: lost.reason };
      }
    };
    let result: LockedResult<T>;
    try {
      result = await withAdvisoryLocksOn(session, keys, watched);
    } catch (error) {
      if (lostWhileWorking) throw new LockSessionLostError(keys, lostWhileWorking.reason, error);
      throw error;
    }
    if (lostWhileWorking) throw new LockSessionLostError(keys, lostWhileWorking.reason, undefined);
    return result;
  });
}

/** The session holding a command's advisory locks was lost while its work ran. */
export class LockSessionLostError extends Error {
  /** `failure`: the work's own error, when it failed (undefined: it returned). */
  constructor(keys: readonly string[], reason: unknown, failure: unknown) {
    const why = reason instanceof Error ? reason.message : String(reason);
    const after =
      failure === undefined
        ? "the work stopped before its next step, or had done its last one (its records above say which)"
        : `the work then failed: ${failure instanceof Error ? failure.message : String(failure)}`;
    super(
      `the database session holding the locks ${keys.join(", ")} was lost while the work ran (${why}); PostgreSQL released them with it, so another job may have worked on the table since. ${after[0]!.toUpperCase()}${after.slice(1)}. Run the same command again: it goes on from where the work stopped, or finds it done`,
      { cause: failure },
    );
    this.name = "LockSessionLostError";
  }
}

/** withAdvisoryLocks in a session the caller holds (`conn`: one connection, not a pool). */
export async function withAdvisoryLocksOn<D, T>(
  conn: Kysely<D>,
  keys: readonly string[],
  work: () => Promise<T>,
): Promise<LockedResult<T>> {
  const held: string[] = [];
  const release = async () => {
    for (const key of held)
      await sql`SELECT pg_advisory_unlock(${ADVISORY_NAMESPACE}, hashtext(${key}))`
        .execute(conn)
        .catch(() => {});
  };
  for (const key of keys) {
    const r = await sql<{ locked: boolean }>`
      SELECT pg_try_advisory_lock(${ADVISORY_NAMESPACE}, hashtext(${key})) AS locked`.execute(conn);
    if (!r.rows[0]?.locked) {
      await release();
      return { acquired: false, busy: key } as const;
    }
    held.push(key);
  }
  try {
    return { acquired: true, value: await work() } as const;
  } finally {
    await release();
  }
}

/**
 * Every run holds a lock of its own (this namespace, and its job_runs id folded into an int) in the
 * session that holds its table locks, from its job_runs row's insert to its end. A later run that can
 * take the lock of an earlier one still `running` knows that no session runs it any more: its process
 * was killed or lost (a folded id that collides with a live run's only keeps a row `running`).
 */
export const RUN_ADVISORY_NAMESPACE = 0x746b; // "tk"

/** The run's key within RUN_ADVISORY_NAMESPACE, as SQL over its id (an int8 expression). */
export const runLockKey = (id: Expression<unknown>): RawBuilder<number> =>
  sql<number>`(${id} % 2147483648)::int`;

export async function releaseRunLock<D>(conn: Kysely<D>, runId: string): Promise<void> {
  await sql`SELECT pg_advisory_unlock(${RUN_ADVISORY_NAMESPACE}, ${runLockKey(sql`${runId}::int8`)})`.execute(
    conn,
  );
}
