// The group column need not be text: the rollup target stores its text form, and every query joins
// raw rows with the column as it is. A first run whose source has history older than the raw-data
// horizon rebuilds every hour and has no range left to scan for late rows: the (empty) list of
// touched buckets must still have the group column's type.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRollup } from "../support/jobs.ts";
import { bucketDiff, expectedBuckets, hourOf, type RawRow, storedBuckets } from "../support/rollup-oracle.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.int_points (
      sensor_id integer NOT NULL,
      ts timestamptz NOT NULL,
      temp double precision,
      ingest_xid xid8 DEFAULT pg_current_xact_id()
    );
    CREATE INDEX ON public.int_points (ingest_xid, ts);
    CREATE TABLE public.int_rollups (LIKE public.telemetry_rollups_hourly INCLUDING ALL);`);
});
afterAll(async () => {
  await t.drop();
});

describe("rollup-hourly with an integer group column", () => {
  it("a first run over history older than the horizon, then a late row: every bucket equals a GROUP BY", async () => {
    const policy = {
      table: "public.int_points",
      timeColumn: "ts",
      partitioned: false,
      retention: { keep: "7 days" },
      rollup: {
        target: "public.int_rollups",
        groupBy: "sensor_id",
        metrics: { columns: ["temp"] },
        batchPauseMs: 0,
      },
    };
    const now = new Date("2026-06-20T10:30:00Z");
    const rows: RawRow[] = [];
    for (let i = 0; i < 200; i++)
      rows.push({
        device: String(1 + (i % 3)),
        ts: new Date(now.getTime() - i * 5_400_000),
        metrics: { temp: i },
      });
    const insert = (list: RawRow[]) =>
      t.pool.query(
        `INSERT INTO public.int_points (sensor_id, ts, temp)
         SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::float8[])`,
        [
          list.map((r) => Number(r.device)),
          list.map((r) => r.ts),
          list.map((r) => (r.metrics as { temp: number }).temp),
        ],
      );
    await insert(rows);
    const first = await runRollup(t.db, makeConfig(t.url, [policy], { now }));
    expect(first.exitCode, JSON.stringify(first.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(
      bucketDiff(expectedBuckets(rows, hourOf(now)), await storedBuckets(t.pool, "public.int_rollups")),
    ).toEqual([]);

    const late: RawRow = {
      device: "2",
      ts: new Date(now.getTime() - 3 * 3_600_000),
      metrics: { temp: 1000 },
    };
    await insert([late]);
    const second = await runRollup(t.db, makeConfig(t.url, [policy], { now }));
    expect(second.exitCode, JSON.stringify(second.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(
      bucketDiff(
        expectedBuckets([...rows, late], hourOf(now)),
        await storedBuckets(t.pool, "public.int_rollups"),
      ),
    ).toEqual([]);
  });
});
