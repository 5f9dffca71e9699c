// A second, differently shaped table managed by configuration alone: timestamp WITHOUT time zone
// (treated as UTC), custom child names, foreign keys to two tables, a composite primary key, a
// bigserial id, no DEFAULT partition.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.units (id int PRIMARY KEY, symbol text NOT NULL);
    INSERT INTO public.units VALUES (1, 'degC'), (2, '%');
    INSERT INTO public.devices (id) VALUES ('sensor-1'), ('sensor-2');
    CREATE TABLE public.sensor_readings (
      id bigserial,
      device_id text NOT NULL REFERENCES public.devices (id),
      unit_id int NOT NULL REFERENCES public.units (id),
      recorded_at timestamp NOT NULL,
      value double precision NOT NULL CHECK (value > -1000),
      PRIMARY KEY (id, recorded_at)
    ) PARTITION BY RANGE (recorded_at);
    CREATE INDEX sensor_readings_device_idx ON public.sensor_readings (device_id, recorded_at DESC);`);
});
afterAll(async () => {
  await t.drop();
});

const SENSORS = {
  table: "sensor_readings",
  timeColumn: "recorded_at",
  interval: "monthly",
  premake: 2,
  naming: "{table}_y{YYYY}m{MM}",
  defaultPartition: false,
};

describe("sensor_readings, managed by configuration alone", () => {
  it("gets children named sensor_readings_yYYYYmMM with UTC bounds and the parent's keys", async () => {
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [SENSORS], { now: "2026-01-15T12:00:00Z" }),
    );
    expect(run.exitCode).toBe(0);
    expect(await partitionsOf(t.url, "public.sensor_readings")).toEqual([
      {
        name: "sensor_readings_y2026m01",
        bound: "FOR VALUES FROM ('2026-01-01 00:00:00') TO ('2026-02-01 00:00:00')",
      },
      {
        name: "sensor_readings_y2026m02",
        bound: "FOR VALUES FROM ('2026-02-01 00:00:00') TO ('2026-03-01 00:00:00')",
      },
      {
        name: "sensor_readings_y2026m03",
        bound: "FOR VALUES FROM ('2026-03-01 00:00:00') TO ('2026-04-01 00:00:00')",
      },
    ]);
    const fks = await t.pool.query(`
      SELECT conrelid::regclass::text AS rel, count(*)::int AS n FROM pg_constraint
       WHERE contype = 'f' AND conrelid::regclass::text LIKE 'sensor_readings_y%' GROUP BY 1 ORDER BY 1`);
    expect(fks.rows).toEqual([
      { rel: "sensor_readings_y2026m01", n: 2 },
      { rel: "sensor_readings_y2026m02", n: 2 },
      { rel: "sensor_readings_y2026m03", n: 2 },
    ]);
    // Rows route to the right month, the id sequence keeps working, the FKs and CHECK hold.
    await t.pool.query(`
      INSERT INTO public.sensor_readings (device_id, unit_id, recorded_at, value)
      VALUES ('sensor-1', 1, '2026-01-31 23:59:59', 21.5), ('sensor-2', 2, '2026-02-01 00:00:00', 40)`);
    const placed = await t.pool.query(
      "SELECT tableoid::regclass::text AS part, id FROM public.sensor_readings ORDER BY recorded_at",
    );
    expect(placed.rows).toEqual([
      { part: "sensor_readings_y2026m01", id: "1" },
      { part: "sensor_readings_y2026m02", id: "2" },
    ]);
    await expect(
      t.pool.query(
        "INSERT INTO public.sensor_readings (device_id, unit_id, recorded_at, value) VALUES ('sensor-1', 9, '2026-02-02', 1)",
      ),
    ).rejects.toThrow(/foreign key/);
    await expect(
      t.pool.query(
        "INSERT INTO public.sensor_readings (device_id, unit_id, recorded_at, value) VALUES ('sensor-1', 1, '2026-02-02', -5000)",
      ),
    ).rejects.toThrow(/check constraint/);
    // No DEFAULT partition was asked for, so none was made: out-of-range rows are refused.
    await expect(
      t.pool.query(
        "INSERT INTO public.sensor_readings (device_id, unit_id, recorded_at, value) VALUES ('sensor-1', 1, '2030-01-01', 1)",
      ),
    ).rejects.toThrow(/no partition/);
  });

  it("boundaries are UTC even when the database's own time zone is not", async () => {
    await t.pool.query(`ALTER DATABASE ${t.name} SET TimeZone = 'America/New_York'`);
    // 2026-12-01T02:00Z is still November 30 in New York: it belongs to December (UTC).
    await t.pool.query(
      "INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('sensor-1', '2026-12-01T02:00:00Z', '{}')",
    );
    const { code } = await runCli(["partition-manager", "--now", "2026-03-31T23:30:00-05:00"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
        tables: [SENSORS, { table: "telemetry_points", timeColumn: "ts", premake: 9 }],
      }),
    });
    expect(code).toBe(0);
    // 2026-03-31T23:30-05:00 is 2026-04-01T04:30Z: April is current, so May and June are premade.
    expect((await partitionsOf(t.url, "public.sensor_readings")).map((p) => p.name).slice(-3)).toEqual([
      "sensor_readings_y2026m04",
      "sensor_readings_y2026m05",
      "sensor_readings_y2026m06",
    ]);
    const december = await t.pool.query(
      "SELECT tableoid::regclass::text AS part FROM public.telemetry_points WHERE device_id = 'sensor-1'",
    );
    expect(december.rows).toEqual([{ part: "telemetry_points_p202612" }]);
  });
});
