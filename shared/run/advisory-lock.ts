// Overlapping runs of the same job on the same table are excluded by a session-level advisory lock,
// held on one dedicated connection for the duration of the work. A run that finds it taken skips
// that table (and exits 0): the other run is doing the work.
import { type Kysely, sql } from "kysely";

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
  return await db.connection().execute(async (conn) => {
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
  });
}
