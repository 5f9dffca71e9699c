// Overlapping runs of the same job on the same table are excluded by a session-level advisory lock,
// held on one dedicated connection for the duration of the work. A run that finds it taken skips
// that table (and exits 0): the other run is doing the work.
import { type Kysely, sql } from "kysely";

/** Both halves of the two-int advisory key: a fixed namespace, and a hash of (job, table). */
export const ADVISORY_NAMESPACE = 0x746a; // "tj"

export type LockedResult<T> = { acquired: true; value: T } | { acquired: false };

export async function withAdvisoryLock<T>(
  db: Kysely<any>,
  job: string,
  table: string,
  work: () => Promise<T>,
): Promise<LockedResult<T>> {
  return await db.connection().execute(async (conn) => {
    const key = `${job}:${table}`;
    const r = await sql<{ locked: boolean }>`
      SELECT pg_try_advisory_lock(${ADVISORY_NAMESPACE}, hashtext(${key})) AS locked`.execute(conn);
    if (!r.rows[0]?.locked) return { acquired: false } as const;
    try {
      return { acquired: true, value: await work() } as const;
    } finally {
      await sql`SELECT pg_advisory_unlock(${ADVISORY_NAMESPACE}, hashtext(${key}))`
        .execute(conn)
        .catch(() => {});
    }
  });
}
