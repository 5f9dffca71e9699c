// Overlapping runs of the same job on the same table are excluded by a session-level advisory lock,
// held on one dedicated connection for the duration of the work. A run that finds it taken skips
// that table (and exits 0): the other run is doing the work. The same session holds the run's own
// lock for as long as the run lasts (RUN_ADVISORY_NAMESPACE), so that a later run can tell a run
// that is still going from one that was killed.
import { type Expression, type Kysely, type RawBuilder, sql } from "kysely";

/** Both halves of the two-int advisory key: a fixed namespace, and a hash of (job, table). */
export const ADVISORY_NAMESPACE = 0x746a; // "tj"

export type LockedResult<T> = { acquired: true; value: T } | { acquired: false; busy?: string };

export async function withAdvisoryLock<DB, T>(
  db: Kysely<DB>,
  job: string,
  table: string,
  work: () => Promise<T>,
): Promise<LockedResult<T>> {
  return await withAdvisoryLocks(db, [`${job}:${table}`], work);
}

/**
 * All of the keys ("job:table") or none: migrate convert holds partition-manager's and retention's
 * keys of its table too, so that neither works on the table while it changes shape.
 */
export async function withAdvisoryLocks<DB, T>(
  db: Kysely<DB>,
  keys: readonly string[],
  work: () => Promise<T>,
): Promise<LockedResult<T>> {
  return await db.connection().execute((conn) => withAdvisoryLocksOn(conn, keys, work));
}

/** withAdvisoryLocks in a session the caller holds (`conn`: one connection, not a pool). */
export async function withAdvisoryLocksOn<DB, T>(
  conn: Kysely<DB>,
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

export async function releaseRunLock<DB>(conn: Kysely<DB>, runId: string): Promise<void> {
  await sql`SELECT pg_advisory_unlock(${RUN_ADVISORY_NAMESPACE}, ${runLockKey(sql`${runId}::int8`)})`.execute(
    conn,
  );
}
