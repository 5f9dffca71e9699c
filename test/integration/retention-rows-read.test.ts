// What a retention run reads from a plain table it deletes rows from in time order: each expired
// row about twice (once where a batch's end is read from the index, once by the DELETE), not a
// third time to count them first. A dry run, which deletes nothing, counts them all, as does a run
// on a table without such an index (its pass by block range ends at the count); a run on one with
// it counts up to EXACT_BELOW, plans with the planner's estimate above it, and reports the rows it
// deleted. Counted from
// pg_stat_user_tables around one run on its own sessions, closed at its end.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { EXACT_BELOW } from "../../shared/retention/expired-rows.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";
import { rowsReadFrom, settledRowsRead } from "../support/rows-read.ts";

let t: TestDatabase;
const JOB = "retention-rows-read";
const NOW = "2026-03-01T00:00:00Z";
const CUTOFF = "2026-02-01T00:00:00.000Z"; // keep 28 days
const EXPIRED = 30_000;
const KEPT = 30_000;
const policy = (table: string) => ({
  table: `public.${table}`,
  timeColumn: "ts",
  partitioned: false,
  retention: { keep: "28 days", batchPauseMs: 0 },
});

beforeAll(async () => {
  t = await createTestDatabase();
  // Two alike tables, one for the dry run and one for the run, so that no counter of one run can
  // land in the other's figure. Analyzed, never vacuumed (autovacuum off: its insert-triggered run
  // would come at a time of its own): no page is all-visible, so every read of a row is counted (an
  // index-only scan of an all-visible page fetches no row and counts none).
  for (const table of ["preview", "readings", "unindexed"])
    await t.pool.query(`
      CREATE TABLE public.${table} (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, v float8)
        WITH (autovacuum_enabled = off);
      ${table === "unindexed" ? "" : `CREATE INDEX ${table}_ts ON public.${table} (ts);`}
      INSERT INTO public.${table} (ts, v)
        SELECT timestamptz '${CUTOFF}' - g * interval '1 second', g FROM generate_series(1, ${EXPIRED}) g;
      INSERT INTO public.${table} (ts, v)
        SELECT timestamptz '${CUTOFF}' + g * interval '1 second', g FROM generate_series(0, ${KEPT - 1}) g;
      ANALYZE public.${table};`);
});
afterAll(async () => {
  await t.drop();
});

/** Runs retention at NOW on sessions of its own; its logs and the rows it read from the table. */
async function runOnOwnSessions(table: string, dryRun: boolean) {
  const tableRead = () => rowsReadFrom(t.pool, `SELECT 'public.${table}'::regclass`);
  const before = await settledRowsRead(t.pool, `telemetry-jobs/${JOB}`, tableRead);
  const pool = new pg.Pool({ connectionString: t.url, max: 4, ...sessionOptions(JOB) });
  pool.on("error", () => {});
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  let run: Awaited<ReturnType<typeof runRetention>>;
  try {
    run = await runRetention(db, makeConfig(t.url, [policy(table)], { now: NOW, dryRun }));
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  } finally {
    await db.destroy();
  }
  const read = (await settledRowsRead(t.pool, `telemetry-jobs/${JOB}`, tableRead, before)) - before;
  return { logs: run.logs, read };
}

const messages = (logs: { message?: unknown }[]) => logs.map((l) => String(l.message));

it("a dry run counts the expired rows exactly", async () => {
  const { logs } = await runOnOwnSessions("preview", true);
  expect(messages(logs)).toContain(
    `would delete ${EXPIRED} rows older than ${CUTOFF} from public.preview (plain table)`,
  );
});

it("a run reads each expired row about twice, plans with an estimate and reports what it deleted", async () => {
  const { logs, read } = await runOnOwnSessions("readings", false);
  const left = await t.pool.query(
    `SELECT count(*) FILTER (WHERE ts < $1)::int AS expired, count(*)::int AS total FROM public.readings`,
    [CUTOFF],
  );
  expect(left.rows[0]).toEqual({ expired: 0, total: KEPT });
  // Counting them all first, the run read them a third time (or, by a sequential scan, the whole
  // table): 4x here.
  expect(read).toBeGreaterThanOrEqual(2 * EXPIRED);
  expect(read).toBeLessThanOrEqual(2 * EXPIRED + EXACT_BELOW + 100);
  const planned = messages(logs).find((m) => m.startsWith("plan: delete"));
  expect(planned).toMatch(
    /^plan: delete about \d+ rows older than 2026-02-01T00:00:00\.000Z from public\.readings/,
  );
  const about = Number(planned?.match(/about (\d+) rows/)?.[1]);
  // The planner's estimate from the table's statistics: near, not exact; never below what was counted.
  expect(EXPIRED).toBeGreaterThan(EXACT_BELOW);
  expect(about).toBeGreaterThan(0.5 * EXPIRED);
  expect(about).toBeLessThan(2 * EXPIRED);
  const audit = await t.pool.query(
    "SELECT rows FROM telemetry_jobs.job_actions WHERE kind = 'delete_rows' ORDER BY id DESC LIMIT 1",
  );
  expect(Number(audit.rows[0]?.rows)).toBe(EXPIRED);
});

it("a run on a table without an index on the time column counts: its pass by block range ends at the count", async () => {
  const { logs } = await runOnOwnSessions("unindexed", false);
  expect(messages(logs)).toContain(
    `plan: delete ${EXPIRED} rows older than ${CUTOFF} from public.unindexed (plain table)`,
  );
  const left = await t.pool.query(
    `SELECT count(*) FILTER (WHERE ts < $1)::int AS expired FROM public.unindexed`,
    [CUTOFF],
  );
  expect(left.rows[0].expired).toBe(0);
});
