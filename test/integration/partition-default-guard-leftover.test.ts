// The DEFAULT guard must not outlive the run that added it. While it is on DEFAULT, a row dated in
// one of its ranges is refused (23514) instead of landing in DEFAULT; that is harmless only while
// the ranges are far ahead. A run that failed or was stopped after adding it used to leave it valid
// (its removal was the plan's last action, and the executor stops at the first failure or a stop
// request), and a later run removed a leftover only at its own end: once a guarded range began,
// current rows were refused. Now a later run removes a leftover as its first action.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_GUARD_CONSTRAINT } from "../../shared/partitions/naming.ts";
import { GUARD_MIN_DEFAULT_ROWS } from "../../shared/partitions/plan-guard.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

// The real clock: the executor also checks how far ahead a guarded range starts against the server's.
const NOW = new Date();
const monthStart = (offset: number) =>
  new Date(Date.UTC(NOW.getUTCFullYear(), NOW.getUTCMonth() + offset, 1));
/** An hour into the month `offset` months ahead: once that month has begun, a current row. */
const inMonth = (offset: number) => new Date(monthStart(offset).getTime() + 3_600_000);

/**
 * This month and the next (a run with premake 1), and enough rows dated years ahead in DEFAULT for
 * the guard to be planned. Returns the policy with premake 3 (months 2 and 3 are guarded) and short
 * lock settings, so that a blocked run fails quickly.
 */
async function guardedTable(name: string) {
  await t.pool.query(
    `CREATE TABLE public.${name} (id bigint NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)`,
  );
  const policy = {
    table: `public.${name}`,
    timeColumn: "ts",
    premake: 1,
    lockTimeoutMs: 200,
    retryBudgetMs: 1500,
  };
  expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
  await t.pool.query(
    `INSERT INTO public.${name} SELECT g, $1::timestamptz + interval '4 years' + g * interval '1 second', g
       FROM generate_series(1, ${GUARD_MIN_DEFAULT_ROWS + 50_000}) g`,
    [NOW],
  );
  return { ...policy, premake: 3 };
}

async function guardOf(table: string): Promise<{ convalidated: boolean }[]> {
  const r = await t.pool.query(
    "SELECT convalidated FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2",
    [`public.${table}_default`, DEFAULT_GUARD_CONSTRAINT],
  );
  return r.rows;
}

/** Another session holding `lock` until released (a long ANALYZE, CREATE INDEX, report...). */
async function holding(lock: string): Promise<{ release(): Promise<void> }> {
  const session: pg.PoolClient = await t.pool.connect();
  await session.query("BEGIN");
  await session.query(lock);
  return {
    async release() {
      await session.query("ROLLBACK");
      session.release();
    },
  };
}

/** Inserts one row dated `at` and says where it landed (it must never be refused). */
async function insertAt(table: string, id: number, at: Date): Promise<string> {
  await t.pool.query(`INSERT INTO public.${table} VALUES ($1, $2, 0)`, [id, at]);
  const r = await t.pool.query(
    `SELECT c.relname::text AS part FROM public.${table} x JOIN pg_class c ON c.oid = x.tableoid WHERE id = $1`,
    [id],
  );
  return r.rows[0].part;
}

const kindsAndOutcomes = (run: { logs: { message: string; action?: string }[] }) =>
  run.logs
    .filter((l) => /^(done|failed)/.test(l.message))
    .map((l) => `${l.message.split(":")[0]} ${l.action}`);

describe("the DEFAULT guard of a run that does not finish", () => {
  it("a guard an earlier run left is dropped first, even when the run then fails", async () => {
    const policy = await guardedTable("gl_left");
    // As a run killed after validating its guard leaves it: months 2 and 3 refused.
    await t.pool.query(
      `ALTER TABLE public.gl_left_default ADD CONSTRAINT ${DEFAULT_GUARD_CONSTRAINT}
         CHECK ((ts IS NULL OR ts < '${monthStart(2).toISOString()}' OR ts >= '${monthStart(3).toISOString()}')
            AND (ts IS NULL OR ts < '${monthStart(3).toISOString()}' OR ts >= '${monthStart(4).toISOString()}'))`,
    );
    expect(await guardOf("gl_left")).toEqual([{ convalidated: true }]);
    const parentBusy = await holding("LOCK TABLE ONLY public.gl_left IN SHARE UPDATE EXCLUSIVE MODE");
    try {
      // Month 2 has begun; the run's first create (month 2, the current one) cannot attach.
      const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: inMonth(2) }));
      expect(run.exitCode).toBe(1);
      expect(kindsAndOutcomes(run)).toEqual(["done drop_default_guard", "failed create_partition"]);
      expect(await guardOf("gl_left")).toEqual([]);
      expect(await insertAt("gl_left", -1, inMonth(2))).toBe("gl_left_default");
    } finally {
      await parentBusy.release();
    }
  }, 180_000);
});
