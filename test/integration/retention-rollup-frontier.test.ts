// Retention of a table that rollup-hourly rolls up must not remove raw rows of hours the rollup has
// not made final. When rollups stall for longer than the retention window, the expired raw
// partitions after the rollup frontier (and expired DEFAULT rows after it) are kept, with a WARN per
// partition and the fact in the table's health record; everything before the frontier goes as usual,
// and once rollup-hourly catches up the next retention run removes the rest.
//
// The layout of every test: daily partitions 2026-06-01 .. 2026-06-13 made by partition-manager,
// the partition of 2026-06-08 missing (its rows land in DEFAULT, like rows of 2026-05-30/31, before
// the first partition), and two devices sending a row every 10 minutes from 2026-05-30 to the end of
// 2026-06-10. keep = 3 days.
import { afterEach, describe, expect, it } from "vitest";
import { catalogSnapshot, partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, makeConfig, runPartitionManager, runRetention, runRollup } from "../support/jobs.ts";

const TABLE = "public.telemetry_points";
const POLICY = {
  table: TABLE,
  timeColumn: "ts",
  interval: "daily",
  premake: 12,
  retention: { keep: "3 days", maxDropsPerRun: 10, batchPauseMs: 0 },
  rollup: { batchPauseMs: 0 },
};
const ROWS_PER_DAY = 2 * 144; // two devices, one row every 10 minutes
const iso = (s: string) => new Date(s).toISOString();

let t: TestDatabase | undefined;
afterEach(async () => {
  await t?.drop();
  t = undefined;
});

async function setup(): Promise<TestDatabase> {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) VALUES ('d1'), ('d2')`);
  const pm = await runPartitionManager(t.db, makeConfig(t.url, [POLICY], { now: "2026-06-01T00:00:00Z" }));
  expect(pm.exitCode).toBe(0);
  await t.pool.query(`DROP TABLE public.telemetry_points_p20260608`);
  await t.pool.query(
    `INSERT INTO ${TABLE} (device_id, ts, metrics)
     SELECT d, ts, jsonb_build_object('temp', extract(epoch FROM ts)::bigint % 50)
       FROM unnest(ARRAY['d1', 'd2']) AS d,
            generate_series('2026-05-30T00:00:00Z'::timestamptz, '2026-06-10T23:50:00Z', interval '10 minutes') AS ts`,
  );
  return t;
}

const days = (from: number, to: number) =>
  Array.from(
    { length: to - from + 1 },
    (_, i) => `telemetry_points_p202606${String(from + i).padStart(2, "0")}`,
  );

async function children(db: TestDatabase): Promise<string[]> {
  return (await partitionsOf(db.url, TABLE))
    .map((p) => p.name)
    .filter((n) => n !== "telemetry_points_default");
}

async function rowCount(db: TestDatabase, relation: string, where = "true"): Promise<number> {
  const r = await db.pool.query(`SELECT count(*)::int AS n FROM ${relation} WHERE ${where}`);
  return r.rows[0].n;
}

function expectOk(run: { exitCode: number; logs: LogRecord[] }) {
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
}

const warnings = (logs: LogRecord[]) => logs.filter((l) => l.severity === "WARNING").map((l) => l.message);
const health = (logs: LogRecord[]) => logs.find((l) => l.event === "table_health" && l.table === TABLE);

describe("retention waits for the rollup frontier", () => {
  it("rollups stalled longer than keep: partitions and DEFAULT rows after the frontier stay; the rest goes; after the catch-up the next run removes them", async () => {
    const db = await setup();
    // rollup-hourly runs once, then stalls: hours before 2026-06-04T00:00Z are final.
    expectOk(await runRollup(db.db, makeConfig(db.url, [POLICY], { now: "2026-06-04T00:30:00Z" })));
    const rolledUp = await db.pool.query(
      `SELECT count(*)::int AS n, sum(sample_count)::int AS s FROM public.telemetry_rollups_hourly WHERE bucket_ts < '2026-06-04'`,
    );
    expect(rolledUp.rows[0]).toEqual({ n: 5 * 24 * 2, s: 5 * ROWS_PER_DAY }); // May 30 .. June 3

    // Eight days later (cutoff 2026-06-09, frontier 2026-06-04). The dry run shows the plan.
    const later = "2026-06-12T00:00:00Z";
    const before = await catalogSnapshot(db.url);
    const dry = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: later, dryRun: true }));
    expectOk(dry);
    expect(await catalogSnapshot(db.url)).toEqual(before);
    const dryMessages = dry.logs.map((l) => l.message);
    const wouldDrop = dryMessages.flatMap((m) => /^would drop public\.(\S+) /.exec(m)?.[1] ?? []);
    expect(wouldDrop).toEqual(days(1, 3));
    for (const name of days(4, 7))
      expect(warnings(dry.logs).some((m) => m.includes(`public.${name}`))).toBe(true);
    expect(dryMessages).toContain(
      `would delete ${2 * ROWS_PER_DAY} rows older than 2026-06-04T00:00:00.000Z from public.telemetry_points_default (default partition)`,
    );
    expect(health(dry.logs)).toMatchObject({
      rollupBlocked: true,
      rollupFrontier: iso("2026-06-04T00:00:00Z"),
    });

    const run = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: later }));
    expectOk(run);
    expect(run.summary.status).toBe("ok");
    expect(await children(db)).toEqual(days(4, 7).concat(days(9, 13)));
    for (const name of days(4, 7)) expect(await rowCount(db, `public.${name}`)).toBe(ROWS_PER_DAY);
    // DEFAULT: the rows of May (before the frontier) are gone, those of June 8 (after it) stay.
    expect(await rowCount(db, "ONLY public.telemetry_points_default")).toBe(ROWS_PER_DAY);
    expect(await rowCount(db, "ONLY public.telemetry_points_default", "ts >= '2026-06-08'")).toBe(
      ROWS_PER_DAY,
    );

    const warned = warnings(run.logs);
    for (const name of days(4, 7)) {
      const w = warned.find((m) => m.includes(`public.${name}`));
      expect(w, warned.join("\n")).toBeDefined();
      expect(w).toContain("2026-06-04T00:00:00.000Z");
      expect(w).toContain("rollup-hourly");
      expect(w).toContain("docs/runbooks/rollups.md");
    }
    const defaultWarning = warned.find((m) => m.includes("public.telemetry_points_default"));
    expect(defaultWarning, warned.join("\n")).toContain("2026-06-04T00:00:00.000Z");
    expect(health(run.logs)).toMatchObject({
      rollupBlocked: true,
      rollupFrontier: iso("2026-06-04T00:00:00Z"),
    });
    expect(run.summary.health[TABLE]).toMatchObject({ rollupBlocked: true });
    const stored = await db.pool.query(
      `SELECT summary->'health'->'public.telemetry_points'->>'rollupBlocked' AS blocked
         FROM telemetry_jobs.job_runs WHERE job = 'retention' ORDER BY id DESC LIMIT 1`,
    );
    expect(stored.rows[0].blocked).toBe("true");
    // The rollups of the removed days are untouched.
    const after = await db.pool.query(
      `SELECT count(*)::int AS n, sum(sample_count)::int AS s FROM public.telemetry_rollups_hourly WHERE bucket_ts < '2026-06-04'`,
    );
    expect(after.rows[0]).toEqual(rolledUp.rows[0]);
    // Every raw row of the hours not rolled up yet is still there for rollup-hourly.
    expect(await rowCount(db, TABLE, "ts >= '2026-06-04'")).toBe(7 * ROWS_PER_DAY);

    // rollup-hourly catches up; the next retention run removes what is now final and expired.
    const caughtUp = "2026-06-12T00:10:00Z";
    expectOk(await runRollup(db.db, makeConfig(db.url, [POLICY], { now: caughtUp })));
    const next = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: caughtUp }));
    expectOk(next);
    expect(warnings(next.logs)).toEqual([]);
    expect(health(next.logs)).toMatchObject({
      rollupBlocked: false,
      rollupFrontier: iso("2026-06-12T00:00:00Z"),
    });
    expect(await children(db)).toEqual(days(9, 13));
    expect(await rowCount(db, "ONLY public.telemetry_points_default")).toBe(0);
    expect(await rowCount(db, TABLE, "ts < '2026-06-09'")).toBe(0);
  });

  it("after a stall longer than keep, rollup-hourly catching up rolls up every hour retention kept, before the next retention run removes it", async () => {
    const db = await setup();
    expectOk(await runRollup(db.db, makeConfig(db.url, [POLICY], { now: "2026-06-04T00:30:00Z" })));
    expectOk(await runRetention(db.db, makeConfig(db.url, [POLICY], { now: "2026-06-12T00:00:00Z" })));
    // The next ordinary run starts where the stalled one stopped, horizon or not.
    const caughtUp = "2026-06-12T00:10:00Z";
    expectOk(await runRollup(db.db, makeConfig(db.url, [POLICY], { now: caughtUp })));
    const perDay = async () =>
      (
        await db.pool.query(
          `SELECT to_char(bucket_ts, 'MM-DD') AS day, count(*)::int AS buckets, sum(sample_count)::int AS samples
             FROM public.telemetry_rollups_hourly GROUP BY 1 ORDER BY 1`,
        )
      ).rows;
    const everyDay = [
      "05-30",
      "05-31",
      ...Array.from({ length: 10 }, (_, i) => `06-${String(i + 1).padStart(2, "0")}`),
    ];
    const full = everyDay.map((day) => ({ day, buckets: 48, samples: ROWS_PER_DAY }));
    expect(await perDay()).toEqual(full);
    const next = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: caughtUp }));
    expectOk(next);
    expect(await children(db)).toEqual(days(9, 13));
    expect(await perDay()).toEqual(full);
  });

  it("sharded rollups: nothing is final until every task of the layout has run; then the earliest task's final_before is the frontier", async () => {
    const db = await setup();
    const later = "2026-06-12T00:00:00Z";
    // One task of two has run: the layout is incomplete, no hour is final.
    expectOk(
      await runRollup(db.db, makeConfig(db.url, [POLICY], { now: "2026-06-04T00:30:00Z" }), {
        shard: { count: 2, index: 0 },
      }),
    );
    const blocked = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: later }));
    expectOk(blocked);
    expect(await children(db)).toEqual(days(1, 7).concat(days(9, 13)));
    expect(await rowCount(db, "ONLY public.telemetry_points_default")).toBe(3 * ROWS_PER_DAY);
    for (const name of days(1, 7))
      expect(warnings(blocked.logs).some((m) => m.includes(`public.${name}`))).toBe(true);
    expect(health(blocked.logs)).toMatchObject({ rollupBlocked: true, rollupFrontier: null });

    // The other task runs, earlier: the frontier is the smaller final_before, 2026-06-03.
    expectOk(
      await runRollup(db.db, makeConfig(db.url, [POLICY], { now: "2026-06-03T00:30:00Z" }), {
        shard: { count: 2, index: 1 },
      }),
    );
    const partial = await runRetention(db.db, makeConfig(db.url, [POLICY], { now: later }));
    expectOk(partial);
    expect(health(partial.logs)).toMatchObject({
      rollupBlocked: true,
      rollupFrontier: iso("2026-06-03T00:00:00Z"),
    });
    expect(await children(db)).toEqual(days(3, 7).concat(days(9, 13)));
    expect(await rowCount(db, "ONLY public.telemetry_points_default")).toBe(ROWS_PER_DAY);
    expect(await rowCount(db, TABLE, "ts >= '2026-06-03'")).toBe(8 * ROWS_PER_DAY);
  });

  it("a rebuild still pending: its hours are not final, the frontier is where it will resume", async () => {
    const db = await setup();
    // A time budget this small stops the first run's history rebuild after at most one batch.
    const tight = { ...POLICY, rollup: { ...POLICY.rollup, backfillBatchHours: 12, timeBudgetMs: 1 } };
    expectOk(await runRollup(db.db, makeConfig(db.url, [tight], { now: "2026-06-11T00:30:00Z" })));
    const w = await db.pool.query(
      `SELECT final_before, backfill_next, backfill_to FROM telemetry_jobs.rollup_watermarks`,
    );
    const next = new Date(w.rows[0].backfill_next);
    expect(next < new Date(w.rows[0].backfill_to)).toBe(true);
    expect(next < new Date("2026-06-01T00:00:00Z")).toBe(true);

    const run = await runRetention(db.db, makeConfig(db.url, [tight], { now: "2026-06-12T00:00:00Z" }));
    expectOk(run);
    expect(health(run.logs)).toMatchObject({ rollupBlocked: true, rollupFrontier: next.toISOString() });
    expect(await children(db)).toEqual(days(1, 7).concat(days(9, 13)));
    expect(await rowCount(db, TABLE, `ts < '${next.toISOString()}'`)).toBe(0);
    expect(await rowCount(db, TABLE, `ts >= '${next.toISOString()}'`)).toBe(
      12 * ROWS_PER_DAY - ((next.getTime() - Date.parse("2026-05-30T00:00:00Z")) / 600_000) * 2,
    );
  });
});
