// The generic real-time read (telemetry_jobs.hourly_series, readRollupSeries) over application
// tables that are not the starter table: a plain table with numeric metric columns and a
// `timestamp without time zone` time column (UTC wall-clock time), and a partitioned one with jsonb
// metrics and timestamptz. Whatever mix of late inserts into final hours, inserts into open hours,
// UPDATEs and DELETEs not yet rolled up, rows of transactions still open while the job ran, and
// rollup runs in between, the read equals a GROUP BY of the raw rows computed here in TypeScript,
// and serves a final hour from the rollups once nothing is pending for it. The caller's TimeZone
// and search_path change nothing.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rollupTarget } from "../../shared/config/policy.ts";
import { SQLSTATE } from "../../shared/db/sqlstate.ts";
import { type HourlyPoint, readHourlySeries, readRollupSeries } from "../../shared/rollups/read.ts";
import { registerRollupRead } from "../../shared/rollups/registry.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, makeConfig, runRollup } from "../support/jobs.ts";

let t: TestDatabase;
const HOUR = 3_600_000;
const MINUTE = 60_000;
const BASE = Date.parse("2026-06-01T00:00:00Z");
// Not on hour boundaries: the read returns the whole hours touching [FROM, TO).
const FROM = new Date(BASE - 14 * HOUR + 17 * MINUTE);
const TO = new Date(BASE + 40 * HOUR - 5 * MINUTE);

interface Source {
  label: string;
  policy: Record<string, any>;
  groups: string[];
  keys: string[];
  /** Inserts rows (group, epoch ms, seed for the values). */
  insert(q: Queryable, rows: { group: string | null; at: number; v: number }[]): Promise<void>;
  /** Every raw row as (group, epoch ms, key -> finite value). */
  rawRows(): Promise<{ group: string | null; at: number; values: Map<string, number> }[]>;
}

interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

// Metric values, some of which are no measurement (NULL, NaN, infinities, non-numbers).
const plainValue = (v: number) => Math.round(v * 1000) / 100;

const PLANT: Source = {
  label: "plain table, numeric columns, timestamp without time zone",
  policy: {
    table: "public.plant_readings",
    timeColumn: "ts",
    partitioned: false,
    rollup: {
      target: "public.plant_hourly",
      groupBy: "site",
      groupColumn: "site",
      metrics: { columns: ["temp_c", "rh"] },
      batchPauseMs: 0,
    },
  },
  groups: ["s1", "s2", "s3"],
  keys: ["temp_c", "rh", "not_a_column"],
  async insert(q, rows) {
    if (rows.length === 0) return;
    // ts as UTC wall-clock text: the session's TimeZone plays no part.
    await q.query(
      `INSERT INTO public.plant_readings (site, ts, temp_c, rh)
       SELECT g, (at AT TIME ZONE 'UTC'), temp, rh FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::numeric[])
         AS x (g, at, temp, rh)`,
      [
        rows.map((r) => r.group),
        rows.map((r) => new Date(r.at).toISOString()),
        rows.map((r) => (r.v % 7 === 0 ? "NaN" : r.v % 11 === 0 ? "Infinity" : plainValue(r.v))),
        rows.map((r) => (r.v % 5 === 0 ? null : r.v % 13 === 0 ? "NaN" : plainValue(r.v * 3))),
      ],
    );
  },
  async rawRows() {
    const r = await t.pool.query(
      `SELECT site, (ts AT TIME ZONE 'UTC') AS at, temp_c, rh::text AS rh FROM public.plant_readings`,
    );
    return r.rows.map((row) => {
      const values = new Map<string, number>();
      if (row.temp_c !== null && Number.isFinite(row.temp_c)) values.set("temp_c", row.temp_c);
      if (row.rh !== null && Number.isFinite(Number(row.rh))) values.set("rh", Number(row.rh));
      return { group: row.site, at: (row.at as Date).getTime(), values };
    });
  },
};

const METER: Source = {
  label: "partitioned table, jsonb metrics, timestamptz",
  policy: {
    table: "public.meter_events",
    timeColumn: "at",
    rollup: {
      target: "public.meter_hourly",
      groupBy: "meter",
      groupColumn: "meter_id",
      metrics: { jsonb: "doc" },
      batchPauseMs: 0,
    },
  },
  groups: ["m1", "m2"],
  keys: ["kwh", "volts"],
  async insert(q, rows) {
    if (rows.length === 0) return;
    await q.query(
      `INSERT INTO public.meter_events (meter, at, doc)
       SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[])`,
      [
        rows.map((r) => r.group),
        rows.map((r) => new Date(r.at).toISOString()),
        rows.map((r) =>
          JSON.stringify(
            r.v % 9 === 0
              ? { kwh: "12", volts: true }
              : r.v % 4 === 0
                ? { kwh: plainValue(r.v) }
                : { kwh: plainValue(r.v), volts: plainValue(r.v * 7) - 100, other: null },
          ),
        ),
      ],
    );
  },
  async rawRows() {
    const r = await t.pool.query(`SELECT meter, at, doc FROM public.meter_events`);
    return r.rows.map((row) => {
      const values = new Map<string, number>();
      for (const [k, v] of Object.entries(row.doc ?? {}))
        if (typeof v === "number" && Number.isFinite(v)) values.set(k, v);
      return { group: row.meter, at: (row.at as Date).getTime(), values };
    });
  },
};

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.plant_readings (
      id bigserial PRIMARY KEY,
      site text,
      ts timestamp without time zone NOT NULL,
      temp_c double precision,
      rh numeric,
      ingest_xid xid8 DEFAULT pg_current_xact_id()
    );
    CREATE INDEX plant_readings_ingest_xid_idx ON public.plant_readings (ingest_xid, ts);
    CREATE TABLE public.plant_hourly (
      site text NOT NULL,
      metric_key text NOT NULL,
      bucket_ts timestamptz NOT NULL,
      sample_count bigint NOT NULL,
      sum double precision NOT NULL,
      min double precision NOT NULL,
      max double precision NOT NULL,
      avg double precision NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (site, metric_key, bucket_ts)
    );
    CREATE TABLE public.meter_events (
      id bigint GENERATED ALWAYS AS IDENTITY,
      meter text,
      at timestamptz NOT NULL,
      doc jsonb,
      ingest_xid xid8 DEFAULT pg_current_xact_id()
    ) PARTITION BY RANGE (at);
    CREATE TABLE public.meter_events_p1 PARTITION OF public.meter_events
      FOR VALUES FROM ('2026-05-31 00:00+00') TO ('2026-06-01 00:00+00');
    CREATE TABLE public.meter_events_p2 PARTITION OF public.meter_events
      FOR VALUES FROM ('2026-06-01 00:00+00') TO ('2026-06-02 00:00+00');
    CREATE TABLE public.meter_events_default PARTITION OF public.meter_events DEFAULT;
    CREATE INDEX meter_events_ingest_xid_idx ON public.meter_events (ingest_xid, at);
    CREATE TABLE public.meter_hourly (
      meter_id text NOT NULL,
      metric_key text NOT NULL,
      bucket_ts timestamptz NOT NULL,
      sample_count bigint NOT NULL,
      sum double precision NOT NULL,
      min double precision NOT NULL,
      max double precision NOT NULL,
      avg double precision NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (meter_id, metric_key, bucket_ts)
    );`);
});
afterAll(async () => {
  await t?.drop();
});

function expectOk(run: { exitCode: number; logs: LogRecord[] }) {
  const errors = run.logs.filter((l) => l.severity === "ERROR");
  expect(run.exitCode, JSON.stringify(errors)).toBe(0);
}

const configFor = (source: Source, now: number) => makeConfig(t.url, [source.policy], { now: new Date(now) });
const targetOf = (source: Source) => rollupTarget(source.policy.rollup);

async function register(source: Source) {
  await registerRollupRead(t.db, configFor(source, BASE).policies[0]!);
}

interface Cell {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** The model: a GROUP BY (group, key, UTC hour) of the raw rows, over the whole hours of the read. */
function oracle(rows: Awaited<ReturnType<Source["rawRows"]>>, group: string, key: string) {
  const lo = Math.floor(FROM.getTime() / HOUR) * HOUR;
  const hi = Math.ceil(TO.getTime() / HOUR) * HOUR;
  const out = new Map<number, Cell>();
  for (const r of rows) {
    if (r.group !== group || r.at < lo || r.at >= hi) continue;
    const v = r.values.get(key);
    if (v === undefined) continue;
    const h = Math.floor(r.at / HOUR) * HOUR;
    const c = out.get(h);
    if (c) {
      c.count++;
      c.sum += v;
      c.min = Math.min(c.min, v);
      c.max = Math.max(c.max, v);
    } else out.set(h, { count: 1, sum: v, min: v, max: v });
  }
  return out;
}

function diff(expected: Map<number, Cell>, points: readonly HourlyPoint[], what: string): string[] {
  const problems: string[] = [];
  const got = new Map(points.map((p) => [p.bucketTs.getTime(), p]));
  if (got.size !== points.length) problems.push(`${what}: an hour is returned twice`);
  for (const [h, e] of expected) {
    const a = got.get(h);
    const at = `${what} ${new Date(h).toISOString()}`;
    if (!a) problems.push(`${at}: missing, expected ${JSON.stringify(e)}`);
    else if (
      a.sampleCount !== e.count ||
      a.min !== e.min ||
      a.max !== e.max ||
      Math.abs(a.sum - e.sum) > 1e-9 * Math.max(1, Math.abs(e.sum)) ||
      Math.abs(a.avg - e.sum / e.count) > 1e-9 * Math.max(1, Math.abs(e.sum / e.count))
    )
      problems.push(`${at} (${a.source}): expected ${JSON.stringify(e)}, got ${JSON.stringify(a)}`);
  }
  for (const p of points)
    if (!expected.has(p.bucketTs.getTime()))
      problems.push(`${what} ${p.bucketTs.toISOString()} (${p.source}): unexpected ${JSON.stringify(p)}`);
  return problems;
}

async function finalBefore(source: Source): Promise<number> {
  const r = await t.pool.query(
    `SELECT min(final_before) AS f FROM telemetry_jobs.rollup_watermarks WHERE target = $1`,
    [source.policy.rollup.target],
  );
  return r.rows[0]?.f ? (r.rows[0].f as Date).getTime() : Number.NEGATIVE_INFINITY;
}

/**
 * The read equals the model for every group and key; with `allRollup`, every final hour comes from
 * the rollups. Returns the problems (empty when all is well).
 */
async function check(source: Source, allRollup: boolean): Promise<string[]> {
  const rows = await source.rawRows();
  const final = await finalBefore(source);
  const problems: string[] = [];
  for (const group of source.groups)
    for (const key of source.keys) {
      const points = await readRollupSeries(t.db, {
        target: targetOf(source),
        group,
        metricKey: key,
        from: FROM,
        to: TO,
      });
      problems.push(...diff(oracle(rows, group, key), points, `${group}/${key}`));
      if (allRollup)
        for (const p of points)
          if (p.bucketTs.getTime() < final && p.source !== "rollup")
            problems.push(
              `${group}/${key} ${p.bucketTs.toISOString()}: final, nothing pending, yet ${p.source}`,
            );
    }
  return problems.slice(0, 10);
}

/** The same call from a session with another TimeZone and an empty search_path. */
async function sameFromHostileSession(source: Source): Promise<void> {
  const client = await t.pool.connect();
  try {
    await client.query(`SET TimeZone = 'Asia/Kathmandu'`);
    await client.query(`SET search_path = ''`);
    for (const group of source.groups)
      for (const key of source.keys) {
        const target = targetOf(source);
        const mine = await readRollupSeries(t.db, { target, group, metricKey: key, from: FROM, to: TO });
        const r = await client.query(
          `SELECT * FROM telemetry_jobs.hourly_series($1, $2, $3, $4, $5::timestamptz, $6::timestamptz)`,
          [target.schema, target.name, group, key, FROM.toISOString(), TO.toISOString()],
        );
        const theirs = r.rows.map((row) => ({
          bucketTs: row.bucket_ts.getTime(),
          sampleCount: Number(row.sample_count),
          sum: row.sum,
          min: row.min,
          max: row.max,
          avg: row.avg,
          source: row.source,
        }));
        expect(theirs, `${source.label}: ${group}/${key}`).toEqual(
          mine.map((p) => ({ ...p, bucketTs: p.bucketTs.getTime() })),
        );
      }
  } finally {
    client.release(true);
  }
}

type Step =
  | { kind: "late"; rows: { g: number; hourBack: number; minute: number; v: number }[] }
  | { kind: "open"; rows: { g: number; hourAhead: number; minute: number; v: number }[] }
  | { kind: "nullGroup"; hourBack: number; v: number }
  | { kind: "update"; pick: number; what: "value" | "hour" | "group" | "nullGroup"; by: number }
  | { kind: "delete"; pick: number; n: number }
  | { kind: "inflight"; hourBack: number; g: number; v: number; advanceMin: number }
  | { kind: "run"; advanceMin: number };

const rowArb = (span: "back" | "ahead") =>
  fc.record({
    g: fc.nat(5),
    [span === "back" ? "hourBack" : "hourAhead"]: fc.nat(span === "back" ? 12 : 2),
    minute: fc.nat(59),
    v: fc.integer({ min: 1, max: 400 }),
  });

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("late" as const),
      rows: fc.array(rowArb("back") as any, { minLength: 1, maxLength: 6 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("open" as const),
      rows: fc.array(rowArb("ahead") as any, { minLength: 1, maxLength: 6 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("nullGroup" as const),
      hourBack: fc.nat(6),
      v: fc.integer({ min: 1, max: 400 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("update" as const),
      pick: fc.nat(1000),
      what: fc.constantFrom("value" as const, "hour" as const, "group" as const, "nullGroup" as const),
      by: fc.integer({ min: -5, max: 5 }),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("delete" as const),
      pick: fc.nat(1000),
      n: fc.integer({ min: 1, max: 3 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("inflight" as const),
      hourBack: fc.nat(6),
      g: fc.nat(5),
      v: fc.integer({ min: 1, max: 400 }),
      advanceMin: fc.nat(90),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant("run" as const), advanceMin: fc.nat(100) }), weight: 3 },
) as fc.Arbitrary<Step>;

/** Table, id column and time column of a source, for the UPDATE and DELETE steps. */
function columns(source: Source) {
  return source === PLANT
    ? { table: "public.plant_readings", group: "site", time: "ts", value: "temp_c = temp_c + $2" }
    : {
        table: "public.meter_events",
        group: "meter",
        time: "at",
        value: `doc = jsonb_set(coalesce(doc, '{}'), '{kwh}', to_jsonb($2::float8))`,
      };
}

async function applyStep(source: Source, step: Step, state: { now: number }): Promise<boolean> {
  const final = Math.floor(state.now / HOUR) * HOUR;
  const groupOf = (g: number) => source.groups[g % source.groups.length]!;
  const c = columns(source);
  switch (step.kind) {
    case "late":
      await source.insert(
        t.pool,
        step.rows.map((r: any) => ({
          group: groupOf(r.g),
          at: final - (r.hourBack + 1) * HOUR + r.minute * MINUTE,
          v: r.v,
        })),
      );
      return false;
    case "open":
      await source.insert(
        t.pool,
        step.rows.map((r: any) => ({
          group: groupOf(r.g),
          at: final + r.hourAhead * HOUR + r.minute * MINUTE,
          v: r.v,
        })),
      );
      return false;
    case "nullGroup":
      await source.insert(t.pool, [
        { group: null, at: final - (step.hourBack + 1) * HOUR + 7 * MINUTE, v: step.v },
      ]);
      return false;
    case "update": {
      const set =
        step.what === "value"
          ? c.value
          : step.what === "hour"
            ? `${c.time} = ${c.time} + make_interval(hours => $2::int)`
            : step.what === "group"
              ? `${c.group} = (ARRAY[${source.groups.map((g) => `'${g}'`).join(",")}])[1 + abs($2::int) % ${source.groups.length}]`
              : `${c.group} = CASE WHEN $2::int > 0 THEN NULL ELSE ${c.group} END`;
      await t.pool.query(
        `UPDATE ${c.table} SET ${set}
          WHERE id = (SELECT id FROM ${c.table} ORDER BY id OFFSET $1 % greatest(1, (SELECT count(*) FROM ${c.table})) LIMIT 1)`,
        [step.pick, step.by],
      );
      return false;
    }
    case "delete":
      await t.pool.query(
        `DELETE FROM ${c.table}
          WHERE id IN (SELECT id FROM ${c.table} ORDER BY id OFFSET $1 % greatest(1, (SELECT count(*) FROM ${c.table})) LIMIT $2)`,
        [step.pick, step.n],
      );
      return false;
    case "inflight": {
      // A writer's transaction is open while the job runs: its row is not in the saved snapshot.
      const writer = await t.pool.connect();
      try {
        await writer.query("BEGIN");
        await source.insert(writer, [
          { group: groupOf(step.g), at: final - (step.hourBack + 1) * HOUR + 3 * MINUTE, v: step.v },
        ]);
        state.now += step.advanceMin * MINUTE;
        expectOk(await runRollup(t.db, configFor(source, state.now)));
        await writer.query("COMMIT");
      } finally {
        writer.release();
      }
      return false;
    }
    case "run":
      state.now += step.advanceMin * MINUTE;
      expectOk(await runRollup(t.db, configFor(source, state.now)));
      return true;
  }
}

describe.each([PLANT, METER])("readRollupSeries: $label", (source) => {
  it("equals a GROUP BY of the raw rows through inserts, updates, deletes and runs; final hours come from the rollups", async () => {
    const initial: { group: string | null; at: number; v: number }[] = [];
    for (let i = 0; i < 60; i++)
      initial.push({
        group: source.groups[i % source.groups.length]!,
        at: BASE - 12 * HOUR + i * 13 * MINUTE,
        v: i + 1,
      });
    await source.insert(t.pool, initial);
    const state = { now: BASE + 30 * MINUTE };
    expectOk(await runRollup(t.db, configFor(source, state.now)));
    await register(source);
    expect(await check(source, true)).toEqual([]);

    let cases = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 2, maxLength: 5 }), async (steps) => {
        cases++;
        let lastWasRun = false;
        for (const step of steps) lastWasRun = await applyStep(source, step, state);
        expect(await check(source, lastWasRun)).toEqual([]);
        if (cases % 6 === 0) await sameFromHostileSession(source);
      }),
      { seed: source === PLANT ? 20261130 : 4242, numRuns: 24, endOnFailure: true },
    );
    // A last run: every final hour from the rollups, and the same answer from another session.
    state.now += 40 * MINUTE;
    expectOk(await runRollup(t.db, configFor(source, state.now)));
    expect(await check(source, true)).toEqual([]);
    await sameFromHostileSession(source);
  }, 50_000);
});

describe("a group column that is not text", () => {
  const GAUGE: Source["policy"] = {
    table: "public.gauge_log",
    timeColumn: "ts",
    partitioned: false,
    rollup: {
      target: "public.gauge_hourly",
      groupBy: "gauge",
      groupColumn: "gauge",
      metrics: { columns: ["reading"] },
      batchPauseMs: 0,
    },
  };
  const read = (group: string) =>
    readRollupSeries(t.db, {
      target: { schema: "public", name: "gauge_hourly" },
      group,
      metricKey: "reading",
      from: new Date(BASE - 4 * HOUR),
      to: new Date(BASE + 2 * HOUR),
    });

  it("matches the value the job stores as text; other spellings and non-values name no group", async () => {
    await t.pool.query(`
      CREATE TABLE public.gauge_log (
        gauge integer,
        ts timestamptz NOT NULL,
        reading smallint,
        ingest_xid xid8 DEFAULT pg_current_xact_id()
      );
      CREATE INDEX gauge_log_ingest_xid_idx ON public.gauge_log (ingest_xid, ts);
      CREATE TABLE public.gauge_hourly (
        gauge text NOT NULL, metric_key text NOT NULL, bucket_ts timestamptz NOT NULL,
        sample_count bigint NOT NULL, sum double precision NOT NULL, min double precision NOT NULL,
        max double precision NOT NULL, avg double precision NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gauge, metric_key, bucket_ts)
      );
      -- three final hours and an open one, for gauges 1 and 2 and a row without a gauge
      INSERT INTO public.gauge_log (gauge, ts, reading)
      SELECT g, '2026-06-01 00:00+00'::timestamptz + make_interval(mins => m), (m % 50)::smallint
        FROM unnest(ARRAY[1, 2, NULL]) AS g, generate_series(-180, 50, 20) AS m;`);
    const config = makeConfig(t.url, [GAUGE], { now: new Date(BASE + 10 * MINUTE) });
    expectOk(await runRollup(t.db, config));
    await registerRollupRead(t.db, config.policies[0]!);
    const one = await read("1");
    // readings are (minute % 50) for the minutes -180, -160, ... 40 around BASE, three per hour
    const sumOf = (minutes: number[]) => minutes.reduce((a, m) => a + (m % 50), 0);
    expect(one.map((p) => [p.bucketTs.toISOString(), p.sampleCount, p.sum, p.source])).toEqual([
      ["2026-05-31T21:00:00.000Z", 3, sumOf([-180, -160, -140]), "rollup"],
      ["2026-05-31T22:00:00.000Z", 3, sumOf([-120, -100, -80]), "rollup"],
      ["2026-05-31T23:00:00.000Z", 3, sumOf([-60, -40, -20]), "rollup"],
      ["2026-06-01T00:00:00.000Z", 3, sumOf([0, 20, 40]), "raw"],
    ]);
    // An update not rolled up yet: the hour comes from raw rows, for gauge 1 only.
    await t.pool.query(
      `UPDATE public.gauge_log SET reading = 99 WHERE gauge = 1 AND ts = '2026-05-31 22:00+00'`,
    );
    const updated = await read("1");
    expect(updated.find((p) => p.bucketTs.getTime() === BASE - 2 * HOUR)).toMatchObject({
      source: "raw",
      max: 99,
    });
    expect((await read("2")).every((p) => p.bucketTs.getTime() >= BASE || p.source === "rollup")).toBe(true);
    // '01' is the integer 1, but the job stores it as '1': no group, whether final or open hours.
    for (const other of ["01", " 1", "abc", "99999999999", ""]) expect(await read(other), other).toEqual([]);
  });
});

describe("the starter table", () => {
  it("the generic read answers as the starter read does", async () => {
    const policy = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
    await t.pool.query(`INSERT INTO public.devices (id) VALUES ('d1'), ('d2')`);
    const insert = (from: string, to: string) =>
      t.pool.query(
        `INSERT INTO public.telemetry_points (device_id, ts, metrics)
         SELECT d, ts, jsonb_build_object('temp', extract(epoch FROM ts)::bigint % 97, 'hum', 'n/a')
           FROM unnest(ARRAY['d1', 'd2']) AS d, generate_series($1::timestamptz, $2::timestamptz, interval '7 minutes') AS ts`,
        [from, to],
      );
    await insert("2026-05-31T20:00:00Z", "2026-06-01T01:30:00Z");
    const config = makeConfig(t.url, [policy], { now: new Date(BASE + 45 * MINUTE) });
    expectOk(await runRollup(t.db, config));
    await registerRollupRead(t.db, config.policies[0]!);
    // pending work of every kind: a late insert, an update, a delete
    await insert("2026-05-31T21:03:00Z", "2026-05-31T21:20:00Z");
    await t.pool.query(
      `UPDATE public.telemetry_points SET metrics = '{"temp": 1000}' WHERE device_id = 'd2' AND ts < '2026-05-31T22:30:00Z' AND ts >= '2026-05-31T22:00:00Z'`,
    );
    await t.pool.query(
      `DELETE FROM public.telemetry_points WHERE device_id = 'd1' AND ts < '2026-05-31T20:30:00Z'`,
    );
    for (const deviceId of ["d1", "d2", "d3"])
      for (const metricKey of ["temp", "hum"]) {
        const query = { metricKey, from: new Date(BASE - 5 * HOUR), to: new Date(BASE + 3 * HOUR) };
        const starter = await readHourlySeries(t.db, { ...query, deviceId });
        const generic = await readRollupSeries(t.db, {
          ...query,
          target: { schema: "public", name: "telemetry_rollups_hourly" },
          group: deviceId,
        });
        expect(generic, `${deviceId}/${metricKey}`).toEqual(starter);
      }
    const sources = (
      await readRollupSeries(t.db, {
        target: { schema: "public", name: "telemetry_rollups_hourly" },
        group: "d2",
        metricKey: "temp",
        from: new Date(BASE - 5 * HOUR),
        to: new Date(BASE + 3 * HOUR),
      })
    ).map((p) => p.source);
    expect(sources).toContain("raw");
    expect(sources).toContain("rollup");
  });
});

describe("the registry", () => {
  it("a second registration leaves the row as it is; the row records the policy's shape", async () => {
    await register(PLANT);
    const before = await t.pool.query(
      `SELECT r.*, r.xmin::text AS version FROM telemetry_jobs.rollup_reads r WHERE target_name = 'plant_hourly'`,
    );
    expect(before.rows[0]).toMatchObject({
      target_schema: "public",
      watermark_key: "public.plant_hourly",
      source_schema: "public",
      source_name: "plant_readings",
      time_column: "ts",
      time_is_utc_timestamp: true,
      group_column: "site",
      target_group_column: "site",
      metrics_jsonb: null,
      metrics_columns: ["temp_c", "rh"],
    });
    await register(PLANT);
    const after = await t.pool.query(
      `SELECT r.*, r.xmin::text AS version FROM telemetry_jobs.rollup_reads r WHERE target_name = 'plant_hourly'`,
    );
    expect(after.rows[0]).toEqual(before.rows[0]);
    const meter = await t.pool.query(
      `SELECT time_is_utc_timestamp, metrics_jsonb, metrics_columns, target_group_column
         FROM telemetry_jobs.rollup_reads WHERE target_name = 'meter_hourly'`,
    );
    expect(meter.rows[0]).toEqual({
      time_is_utc_timestamp: false,
      metrics_jsonb: "doc",
      metrics_columns: null,
      target_group_column: "meter_id",
    });
  });

  it("an unknown target raises a clear error", async () => {
    const error = await readRollupSeries(t.db, {
      target: { schema: "public", name: "no_such_rollups" },
      group: "s1",
      metricKey: "temp_c",
      from: FROM,
      to: TO,
    }).then(
      () => undefined,
      (e: any) => e,
    );
    expect(error?.code).toBe(SQLSTATE.undefinedObject);
    expect(error?.message).toContain("no rollup read is registered for target public.no_such_rollups");
    expect(error?.message).toContain("rollup-hourly registers each rollup target");
  });
});
