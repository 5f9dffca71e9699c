// What an hourly rollup run reads: the rows of the hour that became final and the rows written since
// the last run, not the rest of the current partition or the history. Counted from
// pg_stat_user_tables (seq_tup_read + idx_tup_fetch over the source's partitions) around one run on
// its own sessions, closed at its end so their counters are whole.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRollup } from "../support/jobs.ts";
import { rowsReadFrom, settledRowsRead } from "../support/rows-read.ts";

let t: TestDatabase;
const DEVICES = 50;
const HISTORY_ROWS = 60_000;
const NEW_ROWS = 50_000;
const HISTORY_FROM = "2026-06-01T00:00:00Z";
const NEW_HOUR = "2026-06-10T09:00:00Z"; // in the same monthly partition as most of the history
const POLICY = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const JOB = "rollup-rows-read";
const METRICS = `jsonb_build_object('temp', (g % 400) / 10.0, 'hum', g % 100, 'fw', 'v' || (g % 3))`;

beforeAll(async () => {
  t = await createTestDatabase();
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: "public.telemetry_points", timeColumn: "ts" }], { now: HISTORY_FROM }),
  );
  expect(pm.exitCode).toBe(0);
  await t.pool.query(
    `INSERT INTO public.devices (id) SELECT 'dev' || g FROM generate_series(1, ${DEVICES}) g`,
  );
});
afterAll(async () => {
  await t.drop();
});

const partitionsRead = () =>
  rowsReadFrom(
    t.pool,
    "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'public.telemetry_points'::regclass",
  );

/** Runs `sql` on a session of its own, closed afterwards. */
async function onOwnSession(statements: string[]): Promise<void> {
  const c = new pg.Client({ connectionString: t.url, ...sessionOptions(`${JOB}-setup`) });
  await c.connect();
  try {
    for (const s of statements) await c.query(s);
  } finally {
    await c.end();
  }
}

/** Rows of the source's partitions read during one rollup run at `now`. */
async function rowsReadByRun(now: string): Promise<number> {
  const before = await settledRowsRead(t.pool, `telemetry-jobs/${JOB}-setup`, partitionsRead);
  const pool = new pg.Pool({ connectionString: t.url, max: 4, ...sessionOptions(JOB) });
  pool.on("error", () => {});
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  try {
    const run = await runRollup(db, makeConfig(t.url, [POLICY], { now }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  } finally {
    await db.destroy();
  }
  // The run reads at least its new rows: wait for its counters to arrive, then to settle.
  return (await settledRowsRead(t.pool, `telemetry-jobs/${JOB}`, partitionsRead, before)) - before;
}

it("an hourly run reads the new hour's rows, not the rest of the current partition", async () => {
  // History up to the new hour, all of it in the new hour's partition, rolled up by a first run.
  await onOwnSession([
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'dev' || (g % ${DEVICES} + 1),
            timestamptz '${HISTORY_FROM}' + (g::float8 / ${HISTORY_ROWS}) * (timestamptz '${NEW_HOUR}' - timestamptz '${HISTORY_FROM}'),
            ${METRICS}
       FROM generate_series(1, ${HISTORY_ROWS}) g`,
    "VACUUM ANALYZE public.telemetry_points",
  ]);
  await rowsReadByRun("2026-06-10T09:30:00Z");
  // One new hour, every row of it written after that run; the statistics know about it, as they
  // would once autovacuum has analyzed the partition. And a few late rows for an hour that was
  // final already: only the new-row scan the upper bound limits finds them, so the bucket check
  // below fails if that bound is wrong.
  await onOwnSession([
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'dev' || (g % ${DEVICES} + 1), timestamptz '${NEW_HOUR}' + (g::float8 / ${NEW_ROWS}) * interval '1 hour',
            ${METRICS}
       FROM generate_series(1, ${NEW_ROWS}) g`,
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'dev1', timestamptz '${HISTORY_FROM}' + interval '1 hour 15 minutes', ${METRICS}
       FROM generate_series(1, 5) g`,
    "ANALYZE public.telemetry_points",
  ]);
  const read = await rowsReadByRun("2026-06-10T10:30:00Z");
  expect(read).toBeGreaterThanOrEqual(NEW_ROWS);
  expect(read).toBeLessThanOrEqual(1.05 * NEW_ROWS);
  // And the rollups are whole: every bucket equals a GROUP BY over its raw rows.
  const differing = await t.pool.query(`
    WITH truth AS (
      SELECT p.device_id, m.key AS metric_key, date_trunc('hour', p.ts, 'UTC') AS bucket_ts,
             count(*) AS n, sum(m.value) AS total, min(m.value) AS lo, max(m.value) AS hi
        FROM public.telemetry_points p CROSS JOIN LATERAL telemetry_jobs.numeric_metrics(p.metrics) m
       WHERE p.ts < timestamptz '2026-06-10T10:00:00Z'
       GROUP BY 1, 2, 3)
    SELECT count(*)::int AS n
      FROM truth b FULL JOIN public.telemetry_rollups_hourly r USING (device_id, metric_key, bucket_ts)
     WHERE r.sample_count IS DISTINCT FROM b.n OR r.min IS DISTINCT FROM b.lo OR r.max IS DISTINCT FROM b.hi
        OR abs(r.sum - b.total) > 1e-9 * greatest(1, abs(b.total))`);
  expect(differing.rows[0].n).toBe(0);
});
