// Nothing the product runs depends on search_path: with the database's default search_path empty
// (so every unqualified table, view or function name in a statement fails to resolve), the whole
// adoption journey runs through the CLI on an application's tables: install, convert a plain table,
// adopt both tables for rollups (targets created by the product), partition-manager, rollup-hourly,
// the real-time read, retention and status. Built-in functions and operators still resolve, as they
// always do, through pg_catalog, which PostgreSQL searches first whatever search_path says.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliEnv, cliOk, createRec002 } from "../support/adoption.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { createLegacyTable, legacyTable } from "../support/legacy-tables.ts";

// The job's clock: the database's, when the rows are made (the legacy rows are dated back from it).
let NOW: string;
let finalBefore: string;
const edge = legacyTable("edgewatch", "edge");
const POLICY = [
  {
    table: "edge.telemetry_points",
    timeColumn: "ts",
    premake: 2,
    retention: { keep: "6 months", exactCutoff: true },
    rollup: { target: "edge.telemetry_points_hourly", backfillBatchHours: 744 },
  },
  {
    table: "public.sensor_readings",
    timeColumn: "recorded_at",
    naming: "{table}_y{YYYY}m{MM}",
    premake: 2,
    retention: { keep: "24 months" },
    rollup: {
      target: "public.sensor_readings_hourly",
      groupBy: "device_id",
      metrics: { columns: ["value"] },
      backfillBatchHours: 744,
    },
  },
  { table: "public.sensor_readings_hourly", timeColumn: "bucket_ts", premake: 2 },
];

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  await createLegacyTable(t.pool, edge, 6_000, 300);
  await createRec002(t.pool, 500);
  await t.pool.query(`ALTER DATABASE ${t.name} SET search_path = ''`);
  const now = new Date((await t.pool.query("SELECT now() AS now")).rows[0].now);
  NOW = now.toISOString();
  finalBefore = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000).toISOString();
  env = cliEnv(t.url, POLICY);
}, 60_000);
afterAll(async () => {
  await t?.drop();
});

describe("every job with an empty search_path", () => {
  it("sessions of the jobs really run with it", async () => {
    const client = new pg.Client({ connectionString: t.url });
    await client.connect();
    try {
      const r = await client.query("SELECT current_setting('search_path') AS sp");
      expect(r.rows[0].sp).toBe('""');
    } finally {
      await client.end();
    }
  });

  it("install, convert, adopt, partition-manager, rollup-hourly, read, retention and status all succeed", async () => {
    await cliOk(["migrate", "up"], env);
    await cliOk(
      [
        "migrate",
        "convert",
        "--table",
        "edge.telemetry_points",
        "--drop-unique",
        "telemetry_points_device_message_key",
      ],
      env,
    );
    await cliOk(["adopt", "--now", NOW], env);
    await cliOk(["partition-manager", "--now", NOW], env);
    await cliOk(["rollup-hourly", "--now", NOW], env);
    await cliOk(["partition-manager", "--now", NOW], env);

    // Every raw row of a final hour is in the rollups.
    const rolled = async () =>
      (
        await t.pool.query(`
          SELECT (SELECT sum(sample_count)::int FROM edge.telemetry_points_hourly WHERE metric_key = 'temp') AS edge,
                 (SELECT sum(sample_count)::int FROM public.sensor_readings_hourly) AS rec`)
      ).rows[0];
    const raw = await t.pool.query(
      `SELECT (SELECT count(*)::int FROM edge.telemetry_points WHERE ts < $1) AS edge,
              (SELECT count(*)::int FROM public.sensor_readings WHERE recorded_at < $1) AS rec`,
      [finalBefore],
    );
    expect(await rolled()).toEqual(raw.rows[0]);
    expect(raw.rows[0].edge).toBeGreaterThan(5_000);

    await cliOk(["retention", "--now", NOW], env);
    await cliOk(["status", "--now", NOW], env);
    // Retention removed raw rows (the 2024 child, the edge rows past 6 months); rollups keep them.
    const left = await t.pool.query(
      `SELECT (SELECT count(*)::int FROM edge.telemetry_points WHERE ts < $1) AS edge,
              (SELECT count(*)::int FROM public.sensor_readings WHERE recorded_at < $1) AS rec`,
      [finalBefore],
    );
    expect(left.rows[0].rec).toBe(raw.rows[0].rec - 500);
    expect(left.rows[0].edge).toBeLessThan(raw.rows[0].edge);
    expect(await rolled()).toEqual(raw.rows[0]);

    const series = await t.pool.query(
      `SELECT count(*)::int AS hours FROM telemetry_jobs.hourly_series('public', 'sensor_readings_hourly', '7', 'value',
                                                                    '2026-09-01 00:00Z', '2026-10-01 00:00Z')`,
    );
    expect(series.rows[0].hours).toBeGreaterThan(0);
  }, 240_000);
});
