// rollup-hourly correctness against an independent TypeScript model: random histories with late
// and out-of-order rows and mixed value types, in-flight transactions, a 90-day-late row, the
// never-stale read, and sharded runs.
import fc from "fast-check";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { meanSql } from "../../shared/rollups/apply.ts";
import { readHourlySeries } from "../../shared/rollups/read.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRollup } from "../support/jobs.ts";
import {
  bucketDiff,
  expectedBuckets,
  hourOf,
  insertRows,
  type RawRow,
  storedBuckets,
} from "../support/rollup-oracle.ts";

let t: TestDatabase;
const HOUR = 3_600_000;
const BASE = new Date("2026-06-01T00:00:00Z");
const DEVICES = ["d1", "d2", "d3", "d4", "d5", "d6"];
const POLICY = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const config = (now: Date, tables: unknown[] = [POLICY]) => makeConfig(t.url, tables, { now });

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) SELECT unnest($1::text[])`, [DEVICES]);
  // Monthly children for Jun..Sep; older rows land in DEFAULT: both paths get exercised.
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: "public.telemetry_points", timeColumn: "ts" }], { now: BASE }),
  );
  expect(pm.exitCode).toBe(0);
});
afterAll(async () => {
  await t.drop();
});

/** Exit 0, or fail showing the run's error records. */
function expectOk(run: { exitCode: number; logs: { severity?: string }[] }) {
  const errors = run.logs.filter((l) => l.severity === "ERROR");
  expect(run.exitCode, JSON.stringify(errors)).toBe(0);
}

async function reset() {
  await t.pool.query(`TRUNCATE public.telemetry_points, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
}

async function expectTruth(rows: RawRow[], now: Date) {
  const finalBefore = hourOf(now);
  const stored = await storedBuckets(t.pool);
  expect(bucketDiff(expectedBuckets(rows, finalBefore), stored)).toEqual([]);
  // Never a bucket of an open hour.
  for (const key of stored.keys()) expect(new Date(key.split("|")[2]!) < finalBefore).toBe(true);
}

const metricValue = fc.oneof(
  { weight: 6, arbitrary: fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true }) },
  { weight: 4, arbitrary: fc.integer({ min: -1000, max: 1000 }) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom("12.5", "NaN", "Infinity", "-Infinity", "1e400", "warm") },
  // Subnormal doubles and the smallest normal ones: a mean of them can underflow to zero.
  {
    weight: 1,
    arbitrary: fc.constantFrom(5e-324, -5e-324, 1e-320, -2.2250738585072014e-308, 2.2250738585072014e-308, 0),
  },
  { weight: 1, arbitrary: fc.constantFrom({ nested: 1 }, [1, 2], {}) },
);
const metricsDoc = fc.oneof(
  { weight: 12, arbitrary: fc.dictionary(fc.constantFrom("temp", "hum", "volt", "rssi"), metricValue) },
  { weight: 1, arbitrary: fc.constantFrom([1, 2, 3], 42, "text", null) },
);
const insertStep = fc.record({
  kind: fc.constant("insert" as const),
  rows: fc.array(
    fc.record({
      device: fc.constantFrom(...DEVICES),
      // from 90 days late to 2 hours ahead (device clocks), relative to the step's clock
      offsetMinutes: fc.oneof(
        fc.integer({ min: -90 * 24 * 60, max: 120 }),
        fc.integer({ min: -180, max: 120 }),
      ),
      metrics: metricsDoc,
    }),
    { minLength: 1, maxLength: 40 },
  ),
});
const runStep = fc.record({
  kind: fc.constant("run" as const),
  advanceMinutes: fc.integer({ min: 0, max: 200 }),
});

describe("rollup-hourly", () => {
  beforeEach(reset);

  it("property: after any interleaving of inserts and runs, every final bucket equals the model; open hours are never written", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(insertStep, runStep), { minLength: 2, maxLength: 10 }),
        async (steps) => {
          await reset();
          const rows: RawRow[] = [];
          let now = new Date(BASE.getTime() + 37 * 60_000);
          for (const step of [...steps, { kind: "run" as const, advanceMinutes: 61 }]) {
            if (step.kind === "insert") {
              const batch = step.rows.map((r) => ({
                device: r.device,
                ts: new Date(now.getTime() + r.offsetMinutes * 60_000),
                metrics: r.metrics,
              }));
              await insertRows(t.pool, batch);
              rows.push(...batch);
            } else {
              now = new Date(now.getTime() + step.advanceMinutes * 60_000);
              const run = await runRollup(t.db, config(now));
              expectOk(run);
              await expectTruth(rows, now);
            }
          }
        },
      ),
      { numRuns: 25, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
    );
  });

  it("a transaction still open during a run: the run finishes without waiting, counts every committed row, and the next run adds the late commit", async () => {
    const now = new Date("2026-06-10T12:30:00Z");
    const hour = new Date("2026-06-10T11:00:00Z");
    const committed: RawRow[] = [0, 1, 2].map((i) => ({
      device: "d1",
      ts: new Date(hour.getTime() + i * 60_000),
      metrics: { temp: 10 + i },
    }));
    await insertRows(t.pool, committed);
    expectOk(await runRollup(t.db, config(now)));

    const a = new pg.Client({ connectionString: t.url });
    await a.connect();
    try {
      await a.query("BEGIN");
      const inFlight = { device: "d1", ts: new Date(hour.getTime() + 30 * 60_000), metrics: { temp: 100 } };
      await insertRows(a, [inFlight]);
      // Committed after A began, but before the run: must be counted now.
      const later = { device: "d1", ts: new Date(hour.getTime() + 40 * 60_000), metrics: { temp: 20 } };
      await insertRows(t.pool, [later]);

      const run = await Promise.race([
        runRollup(t.db, config(now)),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("run waited on the open transaction")), 20_000),
        ),
      ]);
      expectOk(run);
      await expectTruth([...committed, later], now);
      // (Snapshots are cluster-wide: other databases' open transactions count too.)
      const health = run.summary.health["public.telemetry_points"] as { unsettledTransactions: number };
      expect(health.unsettledTransactions).toBeGreaterThanOrEqual(1);

      await a.query("COMMIT");
      // Before the next run, the read is already right (raw for the hour with the new row).
      const series = await readHourlySeries(t.db, { deviceId: "d1", metricKey: "temp", from: hour, to: now });
      expect(series.map((p) => [p.sampleCount, p.sum, p.source])).toEqual([
        [5, 10 + 11 + 12 + 100 + 20, "raw"],
      ]);

      expectOk(await runRollup(t.db, config(now)));
      await expectTruth([...committed, later, inFlight], now);
    } finally {
      await a.end();
    }
  });

  it("values whose average underflows to zero (subnormals) are rolled up, avg as PostgreSQL's avg() gives it", async () => {
    // The counterexample CI found: sum -5e-324 over 2 samples; -2.5e-324 rounds to -0, and
    // float8 division raises "value out of range: underflow" for a zero quotient of a non-zero
    // dividend, which failed the whole run (and every later one) on this bucket.
    const ts = new Date(BASE.getTime() + 37 * 60_000);
    const rows: RawRow[] = [
      { device: "d3", ts, metrics: { volt: -5e-324 } },
      { device: "d3", ts, metrics: { volt: 0 } },
      { device: "d1", ts, metrics: { volt: 5e-324, temp: 2.2250738585072014e-308 } },
      { device: "d1", ts, metrics: { volt: 0, temp: -2.2250738585072014e-308 } },
      { device: "d1", ts, metrics: { volt: 0 } },
    ];
    await insertRows(t.pool, rows);
    const now = new Date(BASE.getTime() + 2 * HOUR);
    const run = await runRollup(t.db, config(now));
    expectOk(run);
    await expectTruth(rows, now);
    const r = await t.pool.query(
      `SELECT r.device_id, r.metric_key, r.avg, x.avg AS raw_avg
         FROM public.telemetry_rollups_hourly r
         JOIN (SELECT device_id, key, avg(value::float8) AS avg
                 FROM public.telemetry_points, jsonb_each_text(metrics) AS m (key, value)
                GROUP BY 1, 2) x ON x.device_id = r.device_id AND x.key = r.metric_key
        ORDER BY 1, 2`,
    );
    expect(r.rows.length).toBe(3);
    for (const row of r.rows) expect(Object.is(row.avg, row.raw_avg), JSON.stringify(row)).toBe(true);
  });

  it("a row 90 days late changes exactly its own bucket", async () => {
    const now = new Date("2026-09-01T08:10:00Z");
    const rows: RawRow[] = [];
    for (let h = 0; h < 48; h++)
      for (const device of DEVICES.slice(0, 3))
        rows.push({
          device,
          ts: new Date(now.getTime() - h * HOUR - 20 * 60_000),
          metrics: { temp: h, hum: 50 },
        });
    await insertRows(t.pool, rows);
    expectOk(await runRollup(t.db, config(now)));
    const before = await storedBuckets(t.pool);

    const late = {
      device: "d2",
      ts: new Date(now.getTime() - 90 * 24 * HOUR + 5 * 60_000),
      metrics: { volt: 3.3 },
    };
    await insertRows(t.pool, [late]);
    const run = await runRollup(t.db, config(now));
    expectOk(run);
    const after = await storedBuckets(t.pool);
    const changed = [...after.keys()].filter(
      (k) => JSON.stringify(after.get(k)) !== JSON.stringify(before.get(k)),
    );
    expect(changed).toEqual([`d2|volt|${hourOf(late.ts).toISOString()}`]);
    expect([...before.keys()].every((k) => after.has(k))).toBe(true);
    await expectTruth([...rows, late], now);
  });

  it("the real-time read equals the model across final, late-updated and open hours", async () => {
    const now = new Date("2026-07-15T10:20:00Z");
    const rows: RawRow[] = [];
    for (let m = 0; m < 6 * 60; m += 7)
      rows.push({
        device: "d3",
        ts: new Date(now.getTime() - 6 * HOUR + m * 60_000),
        metrics: { temp: m % 13, x: "s" },
      });
    await insertRows(t.pool, rows);
    expectOk(await runRollup(t.db, config(now)));
    // After the run: a late row into a final hour, and rows into the open hour.
    const extra: RawRow[] = [
      { device: "d3", ts: new Date(now.getTime() - 3 * HOUR), metrics: { temp: 1000 } },
      { device: "d3", ts: new Date(now.getTime() + 60_000), metrics: { temp: -5 } },
      { device: "d3", ts: new Date(now.getTime() + 30 * 60_000), metrics: { temp: 7 } },
    ];
    await insertRows(t.pool, extra);
    const from = new Date(now.getTime() - 7 * HOUR);
    const to = new Date(now.getTime() + 2 * HOUR);
    const series = await readHourlySeries(t.db, { deviceId: "d3", metricKey: "temp", from, to });
    const model = expectedBuckets([...rows, ...extra], new Date(8.64e15), hourOf(from));
    const expected = [...model.entries()]
      .filter(([k]) => k.startsWith("d3|temp|"))
      .map(([k, b]) => [k.split("|")[2], b.count, b.sum, b.min, b.max])
      .sort();
    expect(series.map((p) => [p.bucketTs.toISOString(), p.sampleCount, p.sum, p.min, p.max]).sort()).toEqual(
      expected,
    );
    const sources = new Map(series.map((p) => [p.bucketTs.toISOString(), p.source]));
    expect(sources.get(hourOf(new Date(now.getTime() - 3 * HOUR)).toISOString())).toBe("raw"); // late row
    expect(sources.get(hourOf(new Date(now.getTime() - 2 * HOUR)).toISOString())).toBe("rollup");
    expect(sources.get(hourOf(now).toISOString())).toBe("raw"); // open hour
    // A range that cuts an hour returns that hour whole, whatever its source.
    const cut = await readHourlySeries(t.db, { deviceId: "d3", metricKey: "temp", from, to: now });
    const lastOpen = model.get(`d3|temp|${hourOf(now).toISOString()}`)!;
    expect(cut.at(-1)?.sampleCount).toBe(lastOpen.count); // includes the rows after `now` in that hour
    const cutFinal = await readHourlySeries(t.db, {
      deviceId: "d3",
      metricKey: "temp",
      from,
      to: new Date(hourOf(now).getTime() - 30 * 60_000),
    });
    const lastFinal = model.get(`d3|temp|${new Date(hourOf(now).getTime() - HOUR).toISOString()}`)!;
    expect([cutFinal.at(-1)?.sampleCount, cutFinal.at(-1)?.source]).toEqual([lastFinal.count, "rollup"]);
  });

  it("two tasks of a sharded run write together exactly what one task writes, each only its own groups", async () => {
    const now = new Date("2026-06-20T00:05:00Z");
    const rows: RawRow[] = [];
    for (let i = 0; i < 600; i++)
      rows.push({
        device: DEVICES[i % DEVICES.length]!,
        ts: new Date(now.getTime() - (i % 50) * HOUR - (i % 60) * 60_000),
        metrics: { temp: i, hum: i % 7 },
      });
    await insertRows(t.pool, rows);
    const shard0 = await runRollup(t.db, config(now), { shard: { count: 2, index: 0 } });
    const afterShard0 = await storedBuckets(t.pool);
    const shard1 = await runRollup(t.db, config(now), { shard: { count: 2, index: 1 } });
    expect([shard0.exitCode, shard1.exitCode]).toEqual([0, 0]);
    const sharded = await storedBuckets(t.pool);
    const devices0 = new Set([...afterShard0.keys()].map((k) => k.split("|")[0]));
    expect(devices0.size).toBeGreaterThan(0);
    expect(devices0.size).toBeLessThan(DEVICES.length);

    await t.pool.query(
      `TRUNCATE public.telemetry_rollups_hourly; DELETE FROM telemetry_jobs.rollup_watermarks`,
    );
    expectOk(await runRollup(t.db, config(now)));
    const single = await storedBuckets(t.pool);
    expect(bucketDiff(single, sharded)).toEqual([]);
    await expectTruth(rows, now);

    // While only one task of a new two-task layout has run, the read serves the other task's
    // groups from raw rows, never as empty rollups.
    await t.pool.query(
      `TRUNCATE public.telemetry_rollups_hourly; DELETE FROM telemetry_jobs.rollup_watermarks`,
    );
    expectOk(await runRollup(t.db, config(now), { shard: { count: 2, index: 0 } }));
    const missing = DEVICES.find((d) => !devices0.has(d))!;
    const from = new Date(now.getTime() - 49 * HOUR);
    const partial = await readHourlySeries(t.db, {
      deviceId: missing,
      metricKey: "temp",
      from,
      to: hourOf(now),
    });
    const model = [...expectedBuckets(rows, hourOf(now), hourOf(from)).entries()].filter(([k]) =>
      k.startsWith(`${missing}|temp|`),
    );
    expect(partial.map((p) => [p.bucketTs.toISOString(), p.sampleCount])).toEqual(
      model.map(([k, b]) => [k.split("|")[2], b.count]).sort(),
    );
    expect(partial.every((p) => p.source === "raw")).toBe(true);
    expectOk(await runRollup(t.db, config(now), { shard: { count: 2, index: 1 } }));

    // Later sharded runs keep going incrementally after switching layouts.
    const late = { device: "d4", ts: new Date(now.getTime() - 10 * HOUR), metrics: { temp: 1 } };
    await insertRows(t.pool, [late]);
    await runRollup(t.db, config(now), { shard: { count: 2, index: 0 } });
    await runRollup(t.db, config(now), { shard: { count: 2, index: 1 } });
    await expectTruth([...rows, late], now);
    const layouts = await t.pool.query("SELECT DISTINCT shard_count FROM telemetry_jobs.rollup_watermarks");
    expect(layouts.rows.map((r) => r.shard_count)).toEqual([2]);
  });
});

describe("the bucket mean (meanSql)", () => {
  it("property: equals IEEE division total / n (JavaScript's) for any finite sum, subnormal ones included, never an error", async () => {
    const subnormal = fc.integer({ min: -(2 ** 20), max: 2 ** 20 }).map((k) => k * 5e-324);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(subnormal, fc.double({ noNaN: true, noDefaultInfinity: true })),
        fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 2 ** 40 })),
        async (total, n) => {
          // As text: node-postgres sends a number by toString(), which drops the sign of -0.
          const text = Object.is(total, -0) ? "-0" : String(total);
          const r = await sql<{ mean: number }>`
            SELECT ${meanSql(sql`${text}::float8`, sql`${n}::bigint`)} AS mean`.execute(t.db);
          expect(Object.is(r.rows[0]!.mean, total / n), `${total} / ${n}`).toBe(true);
        },
      ),
      { numRuns: 300, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
    );
  });
});

describe("telemetry_jobs.numeric_metrics", () => {
  it("keeps finite numbers that fit float8 and skips everything else, never raising an error", async () => {
    const r = await t.pool.query(`
      SELECT m.key, m.value FROM telemetry_jobs.numeric_metrics(
        '{"int": 42, "neg": -1.5, "zero": 0, "exp": 1.5e10, "tiny": 1e-310, "huge": 1e400, "under": 1e-400,
          "max": 1.7976931348623157e308, "str": "12.5", "nan": "NaN", "inf": "Infinity", "bool": true,
          "null": null, "obj": {"a": 1}, "arr": [1, 2]}'::jsonb) m ORDER BY m.key`);
    expect(r.rows.map((row) => [row.key, row.value])).toEqual([
      ["exp", 1.5e10],
      ["int", 42],
      ["max", 1.7976931348623157e308],
      ["neg", -1.5],
      ["tiny", 1e-310],
      ["zero", 0],
    ]);
    for (const doc of ["[1, 2]", "5", '"text"', "null"]) {
      const empty = await t.pool.query(
        "SELECT count(*)::int AS n FROM telemetry_jobs.numeric_metrics($1::jsonb)",
        [doc],
      );
      expect(empty.rows[0].n).toBe(0);
    }
  });
});
