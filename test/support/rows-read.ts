// Rows a job's run read from some tables, from pg_stat_user_tables (seq_tup_read + idx_tup_fetch)
// around the run, on sessions of the run's own that are closed at its end so their counters are whole.
import type pg from "pg";

/** seq_tup_read + idx_tup_fetch summed over the relations whose oids `relids` (a SELECT) returns. */
export async function rowsReadFrom(pool: pg.Pool, relids: string): Promise<number> {
  const r = await pool.query(`
    SELECT pg_stat_clear_snapshot(),
           (SELECT coalesce(sum(coalesce(s.seq_tup_read, 0) + coalesce(s.idx_tup_fetch, 0)), 0)
              FROM pg_stat_user_tables s
             WHERE s.relid IN (${relids}))::float8 AS n`);
  return Number(r.rows[0].n);
}

/**
 * The counter once every session of `application` has exited and its last counters have landed:
 * above `floor` when given, and then unchanged for over a second. Before PostgreSQL 15 a backend's
 * counters reach the statistics collector by message, up to 500 ms after it exits, later on a
 * loaded machine; a shorter wait could read a run's counters before they arrived.
 */
export async function settledRowsRead(
  pool: pg.Pool,
  application: string,
  read: () => Promise<number>,
  floor?: number,
): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const left = await pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
      [application],
    );
    if (left.rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  let last = await read();
  for (let i = 0; floor !== undefined && last <= floor && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    last = await read();
  }
  for (let stable = 0, i = 0; stable < 8 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 150));
    const now = await read();
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}
