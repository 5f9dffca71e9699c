// Partition creation against real lock conflicts: a pruned reader, a whole-table reader, an
// ACCESS EXCLUSIVE holder, and live inserts.
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const POINTS = { table: "public.telemetry_points", timeColumn: "ts", interval: "monthly", premake: 3 };

async function session(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: t.url, options: "-c TimeZone=UTC" });
  c.on("error", () => {}); // the database is dropped WITH (FORCE) at the end
  await c.connect();
  return c;
}

async function nonPartitionTables(): Promise<string[]> {
  const r = await t.pool.query(
    "SELECT relname FROM pg_class WHERE relname LIKE 'telemetry_points_p%' AND relkind = 'r' AND NOT relispartition",
  );
  return r.rows.map((row) => row.relname);
}

beforeEach(async () => {
  for (const p of await partitionsOf(t.url, "public.telemetry_points")) {
    if (p.name !== "telemetry_points_default") await t.pool.query(`DROP TABLE public.${p.name}`);
  }
  for (const name of await nonPartitionTables()) await t.pool.query(`DROP TABLE public.${name}`);
  await t.pool.query("TRUNCATE public.telemetry_points, telemetry_jobs.job_runs CASCADE");
  await t.pool.query(
    "INSERT INTO public.devices (id) SELECT 'dev-' || g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
  );
  // Nov 2026 .. Feb 2027 exist, with some rows in November.
  await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }));
  await t.pool.query(
    "INSERT INTO public.telemetry_points (device_id, ts, metrics) SELECT 'dev-1', '2026-11-10'::timestamptz + g * interval '1 minute', '{}' FROM generate_series(1, 100) g",
  );
});

describe("partition creation and other sessions' locks", () => {
  it("an open transaction that read a recent partition (pruned) does not stop partition creation", async () => {
    const reader = await session();
    try {
      await reader.query("BEGIN");
      const r = await reader.query(
        "SELECT count(*)::int AS n FROM public.telemetry_points WHERE ts >= '2026-11-10' AND ts < '2026-11-11'",
      );
      expect(r.rows[0].n).toBe(100);
      const run = await runPartitionManager(
        t.db,
        makeConfig(t.url, [{ ...POINTS, lockTimeoutMs: 500, retryBudgetMs: 5_000 }], {
          now: "2027-01-15T00:00:00Z",
        }),
      );
      expect(run.exitCode).toBe(0);
      expect(run.summary.actions).toEqual({ create_partition: 2 }); // March and April 2027
      expect(run.logs.filter((l) => l.message === "lock not available, retrying")).toEqual([]);
    } finally {
      await reader.query("ROLLBACK");
      await reader.end();
    }
  });

  it("a transaction that read the whole table (DEFAULT included) makes each attempt wait at most lock_timeout, then the run gives up; the next run finishes", async () => {
    const reader = await session();
    const other = await session();
    try {
      await reader.query("BEGIN");
      await reader.query("SELECT count(*) FROM public.telemetry_points");
      // While our attempts queue for DEFAULT's ACCESS EXCLUSIVE lock, other whole-table queries
      // queue behind them; with our lock_timeout at 200 ms they must all get through well within
      // their own 3 s lock_timeout (15x ours: a generous bound, not a stopwatch).
      await other.query("SET lock_timeout = '3s'");
      const runPromise = runPartitionManager(
        t.db,
        makeConfig(t.url, [{ ...POINTS, lockTimeoutMs: 200, retryBudgetMs: 2_500 }], {
          now: "2027-01-15T00:00:00Z",
        }),
      );
      let otherQueries = 0;
      let settled = false;
      void runPromise.finally(() => {
        settled = true;
      });
      while (!settled && otherQueries < 200) {
        await other.query("SELECT count(*) FROM public.telemetry_points");
        otherQueries++;
      }
      const run = await runPromise;
      expect(otherQueries).toBeGreaterThan(0);
      expect(run.exitCode).toBe(1);
      const retries = run.logs.filter((l) => l.message === "lock not available, retrying");
      expect(retries.length).toBeGreaterThan(0);
      const failure = run.logs.find((l) => l.message === "table failed");
      expect(failure?.error).toMatch(/gave up after \d+ attempts/);
      expect(failure?.error).toContain(`pid ${(reader as unknown as { processID: number }).processID}`);
    } finally {
      await reader.query("ROLLBACK");
      await reader.end();
      await other.end();
    }
    // The standalone tables the failed run made are finished by the next run, not left behind.
    const next = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS], { now: "2027-01-15T00:00:00Z" }),
    );
    expect(next.exitCode).toBe(0);
    expect(await nonPartitionTables()).toEqual([]);
    expect((await partitionsOf(t.url, "public.telemetry_points")).map((p) => p.name)).toContain(
      "telemetry_points_p202704",
    );
  });

  it("a session holding ACCESS EXCLUSIVE on the parent makes the job give up after its retry budget and exit 1", async () => {
    const locker = await session();
    try {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE public.telemetry_points IN ACCESS EXCLUSIVE MODE");
      const policy = JSON.stringify({ tables: [{ ...POINTS, lockTimeoutMs: 100, retryBudgetMs: 1_500 }] });
      const { code, lines } = await runCli(["partition-manager", "--now", "2027-01-15T00:00:00Z"], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: policy,
      });
      expect(code).toBe(1);
      const failure = lines.find((l) => l.message === "table failed");
      expect(failure?.error).toMatch(/gave up after \d+ attempts .*AccessExclusiveLock/);
      // Each attempt waited at most lock_timeout (100 ms), so several fit in the 1.5 s budget and
      // the job gave up about when the budget ran out. Without lock_timeout on the attempt, the
      // first one would wait for the session's 30 s backstop and be the only one.
      const [, attempts, seconds] =
        /gave up after (\d+) attempts in (\d+) s/.exec(failure?.error ?? "") ?? [];
      expect(Number(attempts), failure?.error).toBeGreaterThanOrEqual(2);
      expect(Number(seconds), failure?.error).toBeLessThanOrEqual(5);
      expect(lines.at(-1)?.event).toBe("run_summary");
      expect(lines.at(-1)?.status).toBe("failed");
    } finally {
      await locker.query("ROLLBACK");
      await locker.end();
    }
    expect(await nonPartitionTables()).toEqual([]);
    const next = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS], { now: "2027-01-15T00:00:00Z" }),
    );
    expect(next.exitCode).toBe(0);
    expect(next.summary.actions).toEqual({ create_partition: 2 });
  });

  it("inserts running during a partition-manager run never fail, and every row is kept", async () => {
    const writer = await session();
    let stop = false;
    let inserted = 0;
    const errors: string[] = [];
    const writing = (async () => {
      // Rows across the existing months, the months being created, and DEFAULT's far future.
      for (let i = 0; !stop && i < 20_000; i++) {
        const month = i % 14; // 2026-11 .. 2027-12
        const ts = new Date(Date.UTC(2026, 10 + month, 1 + (i % 27), i % 24)).toISOString();
        try {
          await writer.query(
            "INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('dev-2', $1, '{}')",
            [ts],
          );
          inserted++;
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 200));
      const run = await runPartitionManager(
        t.db,
        makeConfig(t.url, [POINTS], { now: "2027-09-15T00:00:00Z" }),
      );
      expect(run.exitCode).toBe(0);
      expect(run.summary.actions.create_partition).toBe(10); // 2027-03 .. 2027-12
    } finally {
      stop = true;
      await writing;
      await writer.end();
    }
    expect(errors.slice(0, 3)).toEqual([]);
    expect(inserted).toBeGreaterThan(0);
    const total = await t.pool.query(
      "SELECT count(*)::int AS n FROM public.telemetry_points WHERE device_id = 'dev-2'",
    );
    expect(total.rows[0].n).toBe(inserted);
  });
});
