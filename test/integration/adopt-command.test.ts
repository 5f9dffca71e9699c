// `telemetry-jobs adopt`, and rollup-hourly's first step that runs the same adoption, on tables an
// application made: a plain one (jsonb metrics, a plain rollup target the product creates) and a
// partitioned one with its own children and DEFAULT (numeric columns, a target in the application's
// own schema `rollups` with a policy entry of its own, so created partitioned). Through the CLI:
// dry run first (nothing changes), then the real run (every step, audited), then again (nothing to
// do); partition-manager and retention before the target exists are not configuration errors; the
// rollups equal a GROUP BY over the raw rows and the generic real-time read equals it too,
// whatever the reading session's TimeZone and search_path.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRollupSeries } from "../../shared/rollups/read.ts";
import { cliEnv, cliOk } from "../support/adoption.ts";
import { schemaCatalog } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

const NOW = "2026-11-20T10:30:00Z";
const FINAL_BEFORE = "2026-11-20T10:00:00Z";

const METERS = {
  table: "public.meter_readings",
  timeColumn: "ts",
  partitioned: false,
  rollup: { target: "public.meter_readings_hourly", metrics: { jsonb: "metrics" } },
};
const SENSORS = {
  table: "public.sensor_readings",
  timeColumn: "recorded_at",
  naming: "{table}_y{YYYY}m{MM}",
  premake: 1,
  rollup: {
    target: "rollups.sensor_hourly",
    groupBy: "device_id",
    groupColumn: "device",
    metrics: { columns: ["value", "rh"] },
  },
};
const SENSOR_TARGET = { table: "rollups.sensor_hourly", timeColumn: "bucket_ts", premake: 1 };
const POLICY = [METERS, SENSORS, SENSOR_TARGET];

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  env = cliEnv(t.url, POLICY);
  await cliOk(["migrate", "up"], env);
  await t.pool.query(`
    CREATE SCHEMA rollups;
    CREATE TABLE public.meter_readings (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      device_id text NOT NULL, ts timestamptz NOT NULL, metrics jsonb NOT NULL);
    CREATE INDEX ON public.meter_readings (ts);
    INSERT INTO public.meter_readings (device_id, ts, metrics)
    SELECT 'm-' || (g % 7), timestamptz '2026-11-18 00:00Z' + g * interval '37 seconds',
           jsonb_build_object('kwh', (g % 13) * 0.5, 'v', 230 + g % 5, 'note', 'x')
      FROM generate_series(1, 6000) g;

    CREATE TABLE public.sensor_readings (
      id bigint GENERATED ALWAYS AS IDENTITY, device_id int NOT NULL, recorded_at timestamptz NOT NULL,
      value double precision, rh real, PRIMARY KEY (id, recorded_at)) PARTITION BY RANGE (recorded_at);
    CREATE INDEX ON public.sensor_readings (device_id, recorded_at);
    CREATE TABLE public.sensor_readings_y2026m09 PARTITION OF public.sensor_readings
      FOR VALUES FROM ('2026-09-01 00:00Z') TO ('2026-10-01 00:00Z');
    CREATE TABLE public.sensor_readings_y2026m10 PARTITION OF public.sensor_readings
      FOR VALUES FROM ('2026-10-01 00:00Z') TO ('2026-11-01 00:00Z');
    CREATE TABLE public.sensor_readings_y2026m11 PARTITION OF public.sensor_readings
      FOR VALUES FROM ('2026-11-01 00:00Z') TO ('2026-12-01 00:00Z');
    CREATE TABLE public.sensor_readings_default PARTITION OF public.sensor_readings DEFAULT;
    INSERT INTO public.sensor_readings (device_id, recorded_at, value, rh)
    SELECT g % 11, timestamptz '2026-09-25 00:00Z' + g * interval '7 minutes',
           CASE WHEN g % 17 = 0 THEN NULL ELSE (g % 40) - 10.25 END, (g % 9) * 1.5
      FROM generate_series(1, 12000) g;`);
}, 120_000);
afterAll(async () => {
  await t?.drop();
});

/** A GROUP BY over the raw rows, written independently of the job's SQL. */
async function oracle(which: "meters" | "sensors", to = FINAL_BEFORE): Promise<string[]> {
  const sqlText =
    which === "meters"
      ? `SELECT device_id AS g, e.key, date_trunc('hour', ts AT TIME ZONE 'UTC') AS h, count(*) AS n,
                round(sum(e.value::text::numeric), 6) AS s, min(e.value::text::float8) AS lo, max(e.value::text::float8) AS hi
           FROM public.meter_readings, jsonb_each(metrics) e
          WHERE jsonb_typeof(e.value) = 'number' AND ts < $1
          GROUP BY 1, 2, 3`
      : `SELECT device_id::text AS g, v.key, date_trunc('hour', recorded_at AT TIME ZONE 'UTC') AS h, count(*) AS n,
                round(sum(v.value)::numeric, 6) AS s, min(v.value) AS lo, max(v.value) AS hi
           FROM public.sensor_readings,
                LATERAL (VALUES ('value', value), ('rh', rh::float8)) AS v (key, value)
          WHERE v.value IS NOT NULL AND recorded_at < $1
          GROUP BY 1, 2, 3`;
  const r = await t.pool.query(`${sqlText} ORDER BY 1, 2, 3`, [to]);
  return r.rows.map(
    (x) => `${x.g}|${x.key}|${x.h.toISOString()}|${x.n}|${Number(x.s).toFixed(6)}|${x.lo}|${x.hi}`,
  );
}

async function stored(which: "meters" | "sensors"): Promise<string[]> {
  const [table, group] =
    which === "meters" ? ["public.meter_readings_hourly", "device_id"] : ["rollups.sensor_hourly", "device"];
  const r = await t.pool.query(
    `SELECT ${group} AS g, metric_key AS key, bucket_ts AT TIME ZONE 'UTC' AS h, sample_count AS n,
            round(sum::numeric, 6) AS s, min AS lo, max AS hi
       FROM ${table} ORDER BY 1, 2, 3`,
  );
  return r.rows.map(
    (x) => `${x.g}|${x.key}|${x.h.toISOString()}|${x.n}|${Number(x.s).toFixed(6)}|${x.lo}|${x.hi}`,
  );
}

async function everything(): Promise<string[]> {
  return [...(await schemaCatalog(t.url, "public")), ...(await schemaCatalog(t.url, "rollups"))];
}

describe("adopting application tables for rollups", () => {
  it("before adoption, partition-manager and status treat the missing target as pending, not as an error", async () => {
    const pm = await cliOk(["partition-manager", "--now", NOW, "--dry-run"], env);
    expect(pm.lines.map((l) => l.message).join("\n")).toMatch(
      /rollups\.sensor_hourly does not exist yet: it is a rollup target, which `telemetry-jobs adopt`/,
    );
    const status = await runCli(["status", "--now", NOW, "--table", "rollups.sensor_hourly"], env);
    expect(status.code).toBe(0);
  });

  it("adopt --dry-run lists every step and changes nothing", async () => {
    const before = await everything();
    const run = await cliOk(["adopt", "--dry-run", "--now", NOW], env);
    const text = run.lines.map((l) => l.message).join("\n");
    expect(text).toMatch(/would create the rollup target public\.meter_readings_hourly/);
    expect(text).toMatch(
      /would create the rollup target rollups\.sensor_hourly: CREATE TABLE [\s\S]* PARTITION BY RANGE/,
    );
    expect(text).toMatch(/ADD COLUMN .*ingest_xid.* xid8/);
    expect(text).toMatch(/CREATE INDEX CONCURRENTLY/);
    expect(text).toMatch(/ON ONLY/);
    expect(text).toMatch(/would install change tracking on public\.meter_readings/);
    expect(await everything()).toEqual(before);
    const audit = await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.job_actions");
    expect(audit.rows[0].n).toBe(0);
  });

  it("adopt makes the targets, ingest_xid and its indexes, the triggers and the read's registry row, audited", async () => {
    await cliOk(["adopt", "--now", NOW], env);
    const targets = await t.pool.query(`
      SELECT n.nspname || '.' || c.relname AS name, c.relkind::text AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE (n.nspname, c.relname) IN (('public', 'meter_readings_hourly'), ('rollups', 'sensor_hourly'),
                                        ('rollups', 'sensor_hourly_default'))
       ORDER BY 1`);
    expect(targets.rows).toEqual([
      { name: "public.meter_readings_hourly", kind: "r" },
      { name: "rollups.sensor_hourly", kind: "p" },
      { name: "rollups.sensor_hourly_default", kind: "r" },
    ]);
    for (const table of ["public.meter_readings", "public.sensor_readings"]) {
      const column = await t.pool.query(
        `SELECT format_type(atttypid, NULL) AS type, pg_get_expr(d.adbin, d.adrelid) AS def
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attrelid = $1::regclass AND a.attname = 'ingest_xid'`,
        [table],
      );
      expect(column.rows).toEqual([{ type: "xid8", def: "pg_current_xact_id()" }]);
      const indexes = await t.pool.query(
        `SELECT i.indisvalid AS valid FROM pg_index i
          WHERE i.indrelid = $1::regclass AND pg_get_indexdef(i.indexrelid) LIKE '%(ingest_xid, %'`,
        [table],
      );
      expect(indexes.rows).toEqual([{ valid: true }]);
      const triggers = await t.pool.query(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'telemetry_jobs_rollup_%' ORDER BY 1",
        [table],
      );
      expect(triggers.rows.map((r) => r.tgname)).toEqual([
        "telemetry_jobs_rollup_delete",
        "telemetry_jobs_rollup_update",
      ]);
    }
    // Every partition of the partitioned source has its own index, attached to the parent's.
    const attached = await t.pool.query(`
      SELECT c.relname AS part, EXISTS (
               SELECT 1 FROM pg_index i JOIN pg_inherits ii ON ii.inhrelid = i.indexrelid
                WHERE i.indrelid = c.oid AND pg_get_indexdef(i.indexrelid) LIKE '%(ingest_xid, recorded_at)%') AS ok
        FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
       WHERE h.inhparent = 'public.sensor_readings'::regclass ORDER BY 1`);
    expect(attached.rows.map((r) => `${r.part}:${r.ok}`)).toEqual([
      "sensor_readings_default:true",
      "sensor_readings_y2026m09:true",
      "sensor_readings_y2026m10:true",
      "sensor_readings_y2026m11:true",
    ]);
    const registry = await t.pool.query(
      "SELECT target_schema || '.' || target_name AS target FROM telemetry_jobs.rollup_reads ORDER BY 1",
    );
    expect(registry.rows.map((r) => r.target)).toEqual([
      "public.meter_readings_hourly",
      "rollups.sensor_hourly",
    ]);
    const kinds = await t.pool.query(
      `SELECT a.kind, count(*)::int AS n FROM telemetry_jobs.job_actions a
         JOIN telemetry_jobs.job_runs r ON r.id = a.run_id WHERE r.job = 'adopt' AND a.outcome = 'ok'
        GROUP BY 1 ORDER BY 1`,
    );
    const byKind = Object.fromEntries(kinds.rows.map((r) => [r.kind, r.n]));
    expect(byKind.adopt_create_target).toBe(2);
    expect(byKind.adopt_ingest_column).toBeGreaterThanOrEqual(2);
    // plain: one index; partitioned: the ON ONLY parent, then a build and an attach per partition
    expect(byKind.adopt_ingest_index).toBe(1 + 1 + 4 * 2);
    expect(byKind.rollup_change_tracking).toBe(2);
  }, 60_000);

  it("a second adopt has nothing to do and changes nothing", async () => {
    const before = await everything();
    const run = await cliOk(["adopt", "--now", NOW], env);
    expect(run.lines.filter((l) => l.message === "already adopted: nothing to do")).toHaveLength(2);
    expect(await everything()).toEqual(before);
  });

  it("partition-manager then manages the new target; rollup-hourly's rollups equal a GROUP BY", async () => {
    await cliOk(["partition-manager", "--now", NOW], env);
    await cliOk(["rollup-hourly", "--now", NOW], env);
    expect(await stored("meters")).toEqual(await oracle("meters"));
    expect(await stored("sensors")).toEqual(await oracle("sensors"));
    expect((await oracle("sensors")).length).toBeGreaterThan(1000);
    // The history before the target's first partitions went to its DEFAULT; the next
    // partition-manager run moves it into monthly partitions, and the rollups stay as they are.
    const inDefault = async () =>
      Number((await t.pool.query("SELECT count(*) AS n FROM rollups.sensor_hourly_default")).rows[0].n);
    expect(await inDefault()).toBeGreaterThan(0);
    await cliOk(["partition-manager", "--now", NOW], env);
    expect(await inDefault()).toBe(0);
    expect(await stored("sensors")).toEqual(await oracle("sensors"));
  }, 120_000);

  it("the real-time read equals a GROUP BY, open hour and late rows included, whatever the session", async () => {
    // A late row in a final hour and rows in the open hour, not rolled up yet.
    await t.pool.query(`
      INSERT INTO public.sensor_readings (device_id, recorded_at, value, rh) VALUES
        (3, '2026-11-19 08:15Z', 1000, NULL), (3, '2026-11-20 10:05Z', 5, 2), (3, '2026-11-20 10:25Z', 7, NULL)`);
    const from = new Date("2026-11-19T06:00:00Z");
    const to = new Date("2026-11-20T11:00:00Z");
    const points = await readRollupSeries(t.db, {
      target: { schema: "rollups", name: "sensor_hourly" },
      group: "3",
      metricKey: "value",
      from,
      to,
    });
    const expected = (await oracle("sensors", to.toISOString()))
      .map((line) => line.split("|"))
      .filter(([g, key, h]) => g === "3" && key === "value" && new Date(h!) >= from);
    expect(points.map((p) => `${p.bucketTs.toISOString()}|${p.sampleCount}|${p.min}|${p.max}`)).toEqual(
      expected.map(([, , h, n, , lo, hi]) => `${h}|${n}|${lo}|${hi}`),
    );
    expect(points.find((p) => p.bucketTs.toISOString() === "2026-11-19T08:00:00.000Z")?.source).toBe("raw");
    expect(points.find((p) => p.bucketTs.toISOString() === "2026-11-20T10:00:00.000Z")?.source).toBe("raw");
    expect(points.find((p) => p.bucketTs.toISOString() === "2026-11-19T07:00:00.000Z")?.source).toBe(
      "rollup",
    );

    // The same from a session with another TimeZone and an empty search_path.
    const client = await t.pool.connect();
    try {
      await client.query("SET TimeZone = 'America/St_Johns'; SET search_path = ''");
      const r = await client.query(
        "SELECT bucket_ts, sample_count::int AS n FROM telemetry_jobs.hourly_series('rollups', 'sensor_hourly', '3', 'value', $1, $2)",
        [from, to],
      );
      expect(r.rows.map((x) => `${x.bucket_ts.toISOString()}|${x.n}`)).toEqual(
        points.map((p) => `${p.bucketTs.toISOString()}|${p.sampleCount}`),
      );
    } finally {
      client.release();
    }
  });

  it("rollup-hourly adopts a table added to the policy on its own: --dry-run plans it, the run does it", async () => {
    await t.pool.query(`
      CREATE TABLE public.gauge_readings (device_id text, ts timestamptz NOT NULL, metrics jsonb);
      INSERT INTO public.gauge_readings
      SELECT 'g-' || (g % 3), timestamptz '2026-11-19 00:00Z' + g * interval '5 minutes', jsonb_build_object('p', g)
        FROM generate_series(1, 300) g`);
    const gauges = {
      table: "public.gauge_readings",
      timeColumn: "ts",
      partitioned: false,
      rollup: { target: "public.gauge_readings_hourly" },
    };
    const withGauges = cliEnv(t.url, [...POLICY, gauges]);
    const before = await everything();
    const dry = await cliOk(
      ["rollup-hourly", "--dry-run", "--now", NOW, "--table", "public.gauge_readings"],
      withGauges,
    );
    expect(dry.lines.map((l) => l.message).join("\n")).toMatch(/the rollups start once the table is adopted/);
    expect(await everything()).toEqual(before);

    const first = await cliOk(
      ["rollup-hourly", "--now", NOW, "--table", "public.gauge_readings"],
      withGauges,
    );
    // The run that adopted the table says it installed change tracking; the next finds it there.
    const tracking = (run: { lines: Record<string, unknown>[] }) =>
      run.lines.find((l) => l.event === "table_health")?.changeTracking;
    expect(tracking(first)).toBe("installed");
    const second = await cliOk(
      ["rollup-hourly", "--now", NOW, "--table", "public.gauge_readings"],
      withGauges,
    );
    expect(tracking(second)).toBe("present");
    const r = await t.pool.query(
      `SELECT count(*)::int AS buckets, sum(sample_count)::int AS samples FROM public.gauge_readings_hourly`,
    );
    const raw = await t.pool.query("SELECT count(*)::int AS n FROM public.gauge_readings WHERE ts < $1", [
      FINAL_BEFORE,
    ]);
    expect(r.rows[0].samples).toBe(raw.rows[0].n);
    expect(r.rows[0].buckets).toBeGreaterThan(20);
  }, 60_000);
});
