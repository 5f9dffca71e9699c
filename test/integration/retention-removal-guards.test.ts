// What happens between a retention run's plan and the transaction that removes a partition: a hold
// placed on it, or a detached leftover's name given to another table. The removal checks both once
// it holds its locks, removes nothing when either changed, and the next run plans from what is
// there then. A holder transaction makes the run wait at the step under test; the change is made
// while it waits.
import type pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
const HOLD = `INSERT INTO telemetry_jobs.retention_holds (partition_name, hold_until, reason)`;

/** name(id, ts): an expired month of 10 rows and the current month of 1 row. */
async function table(name: string, withDefault: boolean): Promise<void> {
  await t.pool.query(`
    CREATE TABLE public.${name} (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.${name}_p202511 PARTITION OF public.${name} FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.${name}_p202603 PARTITION OF public.${name} FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    ${withDefault ? `CREATE TABLE public.${name}_default PARTITION OF public.${name} DEFAULT;` : ""}
    INSERT INTO public.${name} SELECT g, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 9) g;
    INSERT INTO public.${name} VALUES (1000, '2026-03-05Z');`);
}

function config(name: string) {
  const policy = { table: `public.${name}`, timeColumn: "ts", lockTimeoutMs: 8000, retryBudgetMs: 30000 };
  return makeConfig(t.url, [{ ...policy, retention: { keep: "1 month", mode: "drop" } }], { now: NOW });
}

/** Polls `query` (a count) until it is positive; fails the test after 5 s. */
async function waitFor(query: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await t.pool.query(query)).rows[0].n > 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never true: ${query}`);
}

const THIS_DATABASE = "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";
const count = async (sql: string): Promise<number> => (await t.pool.query(sql)).rows[0].n;

/** Runs retention on `name` while `holder` holds locks; `change` runs in the holder once `until`. */
async function runWhile(name: string, hold: string, until: string, change: string) {
  const holder: pg.PoolClient = await t.pool.connect();
  try {
    await holder.query(`BEGIN; ${hold}`);
    const running = runRetention(t.db, config(name));
    await waitFor(until);
    await holder.query(`${change}; COMMIT`);
    return await running;
  } finally {
    holder.release();
  }
}

it("a hold placed while the drop waits for the parent: the partition is kept, attached", async () => {
  await table("h", true);
  const run = await runWhile(
    "h",
    "LOCK TABLE ONLY public.h IN ACCESS SHARE MODE",
    `SELECT count(*)::int AS n FROM pg_locks l WHERE ${THIS_DATABASE}
        AND l.relation = 'public.h'::regclass AND l.mode = 'AccessExclusiveLock' AND NOT l.granted`,
    `${HOLD} VALUES ('public.h_p202511', '2099-01-01Z', 'audit')`,
  );
  expect(run.status).toBe("failed");
  expect(run.logs.some((l) => /held while this run was removing it/.test(String(l.error ?? l.message)))).toBe(
    true,
  );
  expect(await count("SELECT count(*)::int AS n FROM public.h WHERE ts < '2026-01-01Z'")).toBe(10);
  const next = await runRetention(t.db, config("h"));
  expect(next.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.h WHERE ts < '2026-01-01Z'")).toBe(10);
});

it("a hold placed while DETACH CONCURRENTLY waits: the partition stays detached, not dropped", async () => {
  await table("k", false);
  const run = await runWhile(
    "k",
    "LOCK TABLE ONLY public.k IN ACCESS SHARE MODE",
    `SELECT count(*)::int AS n FROM pg_inherits WHERE inhrelid = 'public.k_p202511'::regclass AND inhdetachpending`,
    `${HOLD} VALUES ('public.k_p202511', '2099-01-01Z', 'audit')`,
  );
  expect(run.status).toBe("failed");
  expect(run.logs.some((l) => /held while this run was removing it/.test(String(l.error ?? l.message)))).toBe(
    true,
  );
  expect(await count("SELECT count(*)::int AS n FROM public.k_p202511")).toBe(10);
  const next = await runRetention(t.db, config("k"));
  expect(next.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.k_p202511")).toBe(10);
  expect(await count("SELECT count(*)::int AS n FROM public.k")).toBe(1);
});

it("a leftover's name given to another table while its drop waits: that table is not dropped", async () => {
  await table("f", true);
  // A killed run's leftover: detached and marked, not yet dropped.
  await t.pool.query(`ALTER TABLE public.f DETACH PARTITION public.f_p202511;
    COMMENT ON TABLE public.f_p202511 IS
      'telemetry-jobs retention: removing from public.f, mode drop, range [2025-11-01T00:00:00.000Z, 2025-12-01T00:00:00.000Z), ~10 rows'`);
  const run = await runWhile(
    "f",
    "LOCK TABLE public.f_p202511 IN ACCESS SHARE MODE",
    `SELECT count(*)::int AS n FROM pg_locks l WHERE ${THIS_DATABASE}
        AND l.relation = 'public.f_p202511'::regclass AND l.mode = 'AccessExclusiveLock' AND NOT l.granted`,
    `ALTER TABLE public.f_p202511 RENAME TO f_p202511_kept;
     CREATE TABLE public.f_p202511 (note text);
     INSERT INTO public.f_p202511 VALUES ('kept')`,
  );
  expect(run.status).toBe("failed");
  expect(
    run.logs.some((l) => /do(es)? not carry this run's removal mark/.test(String(l.error ?? l.message))),
  ).toBe(true);
  expect(await count("SELECT count(*)::int AS n FROM public.f_p202511")).toBe(1);
  // The next run finishes the marked table under its new name, and leaves the other alone.
  const next = await runRetention(t.db, config("f"));
  expect(next.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.f_p202511")).toBe(1);
  expect(await count("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'f_p202511_kept'")).toBe(0);
});

it("a killed run's leftover that is itself partitioned is found and finished", async () => {
  await table("sp", true);
  // An expired month split by list, as a table may be sub-partitioned; a killed run detached and
  // marked it.
  await t.pool.query(`
    CREATE TABLE public.sp_p202510 (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY LIST (id);
    CREATE TABLE public.sp_p202510_a PARTITION OF public.sp_p202510 DEFAULT;
    INSERT INTO public.sp_p202510 VALUES (1, '2025-10-05Z'), (2, '2025-10-06Z');
    COMMENT ON TABLE public.sp_p202510 IS
      'telemetry-jobs retention: removing from public.sp, mode drop, range [2025-10-01T00:00:00.000Z, 2025-11-01T00:00:00.000Z), ~2 rows'`);
  const run = await runRetention(t.db, config("sp"));
  expect(run.exitCode).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'sp_p202510%'")).toBe(0);
  expect(await count("SELECT count(*)::int AS n FROM public.sp WHERE ts < '2026-01-01Z'")).toBe(0);
});
