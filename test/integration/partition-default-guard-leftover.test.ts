// The DEFAULT guard must not outlive the run that added it. While it is on DEFAULT, a row dated in
// one of its ranges is refused (23514) instead of landing in DEFAULT; that is harmless only while
// the ranges are far ahead. A run that failed or was stopped after adding it used to leave it valid
// (its removal was the plan's last action, and the executor stops at the first failure or a stop
// request), and a later run removed a leftover only at its own end: once a guarded range began,
// current rows were refused. Now the run removes its own guard whatever its outcome, a later run
// removes a leftover as its first action, and a guard that is still there shows in the health.
import { unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_GUARD_CONSTRAINT } from "../../shared/partitions/naming.ts";
import { GUARD_MIN_DEFAULT_ROWS } from "../../shared/partitions/plan-guard.ts";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, startCli } from "../support/jobs.ts";

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
const monthName = (table: string, offset: number) => {
  const d = monthStart(offset);
  return `${table}_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
};
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
  it("a failed run removes its guard, and a later failed run guards nothing it needs: no row is refused", async () => {
    const policy = await guardedTable("gl_fail");
    // Another session holds the parent in SHARE UPDATE EXCLUSIVE: every attach times out.
    const parentBusy = await holding("LOCK TABLE ONLY public.gl_fail IN SHARE UPDATE EXCLUSIVE MODE");
    try {
      const run1 = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
      expect(run1.exitCode).toBe(1);
      expect(run1.summary.tables).toEqual({ "public.gl_fail": "failed" });
      // The guard was added and validated, then the first attach failed; the run removed it anyway.
      expect(run1.summary.actions).toMatchObject({ guard_default: 1 });
      expect(await guardOf("gl_fail")).toEqual([]);
      expect(
        run1.logs.filter((l) => l.message.includes("dropped the DEFAULT guard")).map((l) => l.severity),
      ).toEqual(["WARNING"]);
      // Weeks later month 2 has begun: its rows are current rows, and none is refused.
      expect(await insertAt("gl_fail", -1, inMonth(2))).toBe("gl_fail_default");
      const later = inMonth(2);
      const run2 = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: later }));
      expect(run2.exitCode).toBe(1);
      expect(await guardOf("gl_fail")).toEqual([]);
      expect(await insertAt("gl_fail", -2, inMonth(2))).toBe("gl_fail_default");
    } finally {
      await parentBusy.release();
    }
    // Unblocked, the next run at that time makes month 2 and moves both rows into it.
    const run3 = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: inMonth(2) }));
    expect(run3.exitCode, JSON.stringify(run3.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(await guardOf("gl_fail")).toEqual([]);
    const moved = await t.pool.query(
      "SELECT c.relname::text AS part, count(*)::int AS n FROM public.gl_fail x JOIN pg_class c ON c.oid = x.tableoid WHERE id < 0 GROUP BY 1",
    );
    expect(moved.rows).toEqual([{ part: monthName("gl_fail", 2), n: 2 }]);
  }, 180_000);

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

  it("a guard that cannot be dropped is reported in the table's health, with the way out", async () => {
    const policy = await guardedTable("gl_stuck");
    await t.pool.query(
      `ALTER TABLE public.gl_stuck_default ADD CONSTRAINT ${DEFAULT_GUARD_CONSTRAINT}
         CHECK (ts IS NULL OR ts < '${monthStart(6).toISOString()}' OR ts >= '${monthStart(7).toISOString()}')`,
    );
    // A reader of DEFAULT in an open transaction: dropping a constraint needs DEFAULT to itself.
    const defaultRead = await holding(
      "SELECT count(*) FROM (SELECT 1 FROM public.gl_stuck_default LIMIT 1) x",
    );
    let run: Awaited<ReturnType<typeof runPartitionManager>>;
    try {
      run = await runPartitionManager(t.db, makeConfig(t.url, [{ ...policy, premake: 1 }], { now: NOW }));
    } finally {
      await defaultRead.release();
    }
    expect(run.exitCode).toBe(1);
    expect(kindsAndOutcomes(run)).toEqual(["failed drop_default_guard"]);
    expect(await guardOf("gl_stuck")).toEqual([{ convalidated: true }]);
    const health = run.summary.health["public.gl_stuck"] as { verdict: string; reasons: string[] };
    expect(health.verdict).toBe("WARN");
    expect(health.reasons).toContainEqual(
      expect.stringContaining(`constraint ${DEFAULT_GUARD_CONSTRAINT} is still on public.gl_stuck_default`),
    );
    // Unblocked, the next run drops it first.
    const next = await runPartitionManager(
      t.db,
      makeConfig(t.url, [{ ...policy, premake: 1 }], { now: NOW }),
    );
    expect(next.exitCode).toBe(0);
    expect(next.summary.actions).toEqual({ drop_default_guard: 1 });
    expect(await guardOf("gl_stuck")).toEqual([]);
  }, 180_000);

  it("SIGTERM during an attach: the run stops after it and removes its guard", async () => {
    const policy = await guardedTable("gl_term");
    const resume = join(tmpdir(), `gl-term-resume-${process.pid}-${Date.now()}`);
    const cli = startCli(["partition-manager"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
      // Inside the attach transaction of the first guarded month, the guard valid and relied on.
      TELEMETRY_JOBS_FAULT_PAUSE: "after-move-rows",
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    try {
      await cli.waitFor("paused at fault point", 60_000);
      expect(await guardOf("gl_term")).toEqual([{ convalidated: true }]);
      cli.child.kill("SIGTERM");
      await cli.waitFor("SIGTERM received", 10_000);
      writeFileSync(resume, "");
      const { code } = await cli.done;
      expect(code, JSON.stringify(cli.lines.filter((l) => l.severity === "ERROR"))).toBe(1);
    } finally {
      try {
        unlinkSync(resume);
      } catch {}
    }
    const summary = cli.lines.find((l) => l.event === "run_summary");
    expect(summary?.tables).toEqual({ "public.gl_term": "interrupted" });
    expect(summary?.actions).toEqual({ guard_default: 1, create_partition: 1, drop_default_guard: 1 });
    expect(cli.lines.filter((l) => l.message.includes("dropped the DEFAULT guard"))).toHaveLength(1);
    // The attach under way committed; the month after it was never begun; no guard is left.
    expect((await partitionsOf(t.url, "public.gl_term")).map((p) => p.name)).toEqual([
      "gl_term_default",
      ...[0, 1, 2].map((i) => monthName("gl_term", i)),
    ]);
    expect(await guardOf("gl_term")).toEqual([]);
    expect(await insertAt("gl_term", -1, inMonth(3))).toBe("gl_term_default");
  }, 180_000);
});
