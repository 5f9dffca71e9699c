// UPDATE and DELETE of raw rows reach the rollups and the real-time read. Readings get corrected,
// devices get deleted with their rows, rows move to another hour (and another partition): after
// the next run every final bucket equals a GROUP BY of the raw rows (within the raw-data horizon),
// and the real-time read equals it at once. Inserts pay nothing: only UPDATE and DELETE statement
// triggers on the table itself record the touched (group, hour). Retention's own deletes of
// expired rows never empty the rollups that outlive the raw data.
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { readHourlySeries } from "../../shared/rollups/read.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, makeConfig, runPartitionManager, runRetention, runRollup } from "../support/jobs.ts";
import {
  type Bucket,
  bucketDiff,
  expectedBuckets,
  expectedSeries,
  hourOf,
  insertKeyedRows,
  type KeyedRow,
  type RawRow,
  seriesBuckets,
  storedBuckets,
} from "../support/rollup-oracle.ts";

let t: TestDatabase;
const HOUR = 3_600_000;
const MINUTE = 60_000;
const DAY = 24 * HOUR;
const TABLE = "public.telemetry_points";
const BASE = new Date("2026-06-01T00:00:00Z");
const DEVICES = ["d1", "d2", "d3", "d4"];
const KEYS = ["temp", "hum"];
const POLICY = { table: TABLE, timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const config = (now: Date, tables: unknown[] = [POLICY], dryRun = false) =>
  makeConfig(t.url, tables, { now, dryRun });

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) SELECT unnest($1::text[])`, [DEVICES]);
  // Monthly children for Jun..Sep; May's rows land in DEFAULT: a moved row changes partition.
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: TABLE, timeColumn: "ts" }], { now: BASE }),
  );
  expect(pm.exitCode).toBe(0);
});
afterAll(async () => {
  await t.drop();
});

async function reset() {
  await t.pool.query(`TRUNCATE public.telemetry_points, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
  await t.pool.query(`INSERT INTO public.devices (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [
    DEVICES,
  ]);
}

function expectOk(run: { exitCode: number; logs: LogRecord[] }) {
  const errors = run.logs.filter((l) => l.severity === "ERROR" || l.severity === "WARNING");
  expect(run.exitCode, JSON.stringify(errors)).toBe(0);
}

/** Rollups equal the model for every final hour (and nothing else is stored). */
async function rollupProblems(rows: readonly RawRow[], now: Date): Promise<string[]> {
  return bucketDiff(expectedBuckets(rows, hourOf(now)), await storedBuckets(t.pool));
}

/** The real-time read equals the model for every device and key over [from, to). */
async function readProblems(rows: readonly RawRow[], from: Date, to: Date): Promise<string[]> {
  const problems: string[] = [];
  for (const device of DEVICES)
    for (const metricKey of KEYS) {
      const points = await readHourlySeries(t.db, { deviceId: device, metricKey, from, to });
      problems.push(
        ...bucketDiff(
          expectedSeries(rows, device, metricKey, from, to),
          seriesBuckets(device, metricKey, points),
        ),
      );
    }
  return problems.slice(0, 10);
}

/** Sources the read used per hour, for one device and key. */
async function readSources(device: string, metricKey: string, from: Date, to: Date) {
  const points = await readHourlySeries(t.db, { deviceId: device, metricKey, from, to });
  return Object.fromEntries(points.map((p) => [p.bucketTs.toISOString(), p.source]));
}

/** Every trigger on the table and its partitions, as comparable facts. */
async function triggersOnTree(table: string) {
  const r = await t.pool.query(
    `SELECT c.relname AS rel, tg.tgname AS name,
            (tg.tgtype & 1) <> 0 AS for_each_row, (tg.tgtype & 2) <> 0 AS before,
            (tg.tgtype & 4) <> 0 AS on_insert, (tg.tgtype & 8) <> 0 AS on_delete,
            (tg.tgtype & 16) <> 0 AS on_update, (tg.tgtype & 32) <> 0 AS on_truncate,
            tg.tgoldtable IS NOT NULL AS old_table, tg.tgnewtable IS NOT NULL AS new_table,
            tg.tgfoid::regprocedure::text AS fn, encode(tg.tgargs, 'escape') AS args, tg.tgenabled AS enabled
       FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
      WHERE tg.tgrelid IN (SELECT relid FROM pg_partition_tree($1::regclass)) AND NOT tg.tgisinternal
      ORDER BY c.relname, tg.tgname`,
    [table],
  );
  return r.rows;
}

async function dropChangeTriggers(table: string) {
  for (const tr of await triggersOnTree(table))
    await t.pool.query(`DROP TRIGGER ${pg.escapeIdentifier(tr.name)} ON ${table}`);
}

/** Change records of the source not yet consumed, of hours in [from, before). */
async function pendingChanges(
  from: Date,
  table = { schema: "public", name: "telemetry_points" },
  before = new Date("9999-01-01T00:00:00Z"),
) {
  const r = await t.pool.query(
    `SELECT DISTINCT group_value AS g, bucket_ts AS h FROM telemetry_jobs.rollup_changes
      WHERE source_schema = $1 AND source_name = $2 AND bucket_ts >= $3 AND bucket_ts < $4 ORDER BY 2, 1`,
    [table.schema, table.name, from, before],
  );
  return r.rows.map((row) => `${row.g}@${new Date(row.h).toISOString()}`);
}

/** Hours x devices x keys of regular rows, each with a key of its own. */
function grid(from: Date, hours: number, perHour: number, prefix = "r"): KeyedRow[] {
  const rows: KeyedRow[] = [];
  for (let h = 0; h < hours; h++)
    for (const [d, device] of DEVICES.entries())
      for (let i = 0; i < perHour; i++)
        rows.push({
          key: `${prefix}${h}-${device}-${i}`,
          device,
          ts: new Date(from.getTime() + h * HOUR + (5 + 10 * i + d) * MINUTE),
          metrics: { temp: 10 * h + i + d, ...(i === 0 ? { hum: 40 + h } : {}) },
        });
  return rows;
}

describe("change tracking on the source", () => {
  beforeEach(reset);

  it("only UPDATE and DELETE statement triggers on the table itself: inserts and partitions fire nothing", async () => {
    await dropChangeTriggers(TABLE);
    const now = new Date("2026-06-10T12:30:00Z");
    const rows = grid(new Date("2026-06-10T09:00:00Z"), 3, 1);
    await insertKeyedRows(t.pool, rows);
    const first = await runRollup(t.db, config(now));
    expectOk(first);
    const common = {
      rel: "telemetry_points",
      for_each_row: false,
      before: false,
      on_insert: false,
      on_truncate: false,
      fn: "telemetry_jobs.record_rollup_changes()",
      args: "ts\\000device_id\\000",
      enabled: "O",
    };
    const installed = await triggersOnTree(TABLE);
    expect(installed.map(({ name: _, ...facts }) => facts)).toEqual([
      { ...common, on_delete: true, on_update: false, old_table: true, new_table: false },
      { ...common, on_delete: false, on_update: true, old_table: true, new_table: true },
    ]);
    expect(first.logs.some((l) => /installed change tracking/.test(l.message))).toBe(true);

    // Inserts record nothing; an update and a delete record their (group, hour) once each.
    const since = new Date("2026-06-10T00:00:00Z");
    await insertKeyedRows(t.pool, grid(new Date("2026-06-10T10:00:00Z"), 1, 2, "x"));
    expect(await pendingChanges(since)).toEqual([]);
    await t.pool.query(
      `UPDATE ${TABLE} SET metrics = '{"temp": 1}' WHERE device_id = 'd2' AND ts < '2026-06-10T10:00Z'`,
    );
    await t.pool.query(`DELETE FROM ${TABLE} WHERE device_id = 'd3' AND ts >= '2026-06-10T11:00Z'`);
    expect(await pendingChanges(since)).toEqual([
      "d2@2026-06-10T09:00:00.000Z",
      "d3@2026-06-10T11:00:00.000Z",
    ]);

    // A second run finds them in place; a partition created later has no trigger of its own.
    const second = await runRollup(t.db, config(now));
    expectOk(second);
    expect(second.logs.some((l) => /change tracking/.test(l.message) && /install/.test(l.message))).toBe(
      false,
    );
    const pm = await runPartitionManager(
      t.db,
      makeConfig(t.url, [{ table: TABLE, timeColumn: "ts", premake: 5 }], { now: BASE }),
    );
    expect(pm.exitCode).toBe(0);
    expect(await triggersOnTree(TABLE)).toEqual(installed);
  });

  it("--dry-run says it would install the triggers and installs nothing", async () => {
    await dropChangeTriggers(TABLE);
    const run = await runRollup(t.db, config(new Date("2026-06-10T12:30:00Z"), [POLICY], true));
    expect(run.exitCode).toBe(0);
    const said = run.logs.find((l) => /would install change tracking/.test(l.message));
    expect(said?.message).toMatch(/CREATE OR REPLACE TRIGGER/);
    expect(await triggersOnTree(TABLE)).toEqual([]);
  });

  it("a changed groupBy: the triggers are redefined and the records of the old group column dropped", async () => {
    const now = new Date("2026-06-10T12:30:00Z");
    await insertKeyedRows(t.pool, grid(new Date("2026-06-10T09:00:00Z"), 2, 1));
    expectOk(await runRollup(t.db, config(now)));
    await t.pool.query(`UPDATE ${TABLE} SET metrics = '{"temp": 2}' WHERE device_id = 'd1'`);
    const since = new Date("2026-06-10T00:00:00Z");
    expect((await pendingChanges(since)).length).toBeGreaterThan(0);

    const byMessage = { ...POLICY, rollup: { ...POLICY.rollup, groupBy: "message_id" } };
    const run = await runRollup(t.db, config(now, [byMessage], true));
    expect(run.logs.some((l) => /would install change tracking/.test(l.message))).toBe(true);
    const changed = await runRollup(t.db, config(new Date("2026-06-10T13:30:00Z"), [byMessage]));
    expect(changed.exitCode).toBe(0);
    expect(changed.logs.some((l) => l.severity === "WARNING" && /records were dropped/.test(l.message))).toBe(
      true,
    );
    expect((await triggersOnTree(TABLE)).map((tr) => tr.args)).toEqual([
      "ts\\000message_id\\000",
      "ts\\000message_id\\000",
    ]);
    expect(await pendingChanges(since)).toEqual([]);

    // Back to device_id (the other tests' policy).
    await reset();
    expectOk(await runRollup(t.db, config(now)));
    expect((await triggersOnTree(TABLE)).map((tr) => tr.args)).toEqual([
      "ts\\000device_id\\000",
      "ts\\000device_id\\000",
    ]);
  });

  it("waits at most lockTimeoutMs at a time for a writer's lock, retries, and never fails the run for it", async () => {
    await dropChangeTriggers(TABLE);
    const now = new Date("2026-06-10T12:30:00Z");
    const rows = grid(new Date("2026-06-10T09:00:00Z"), 2, 1);
    await insertKeyedRows(t.pool, rows);
    const policy = (budget: number) => ({ ...POLICY, lockTimeoutMs: 100, retryBudgetMs: budget });
    const writer = new pg.Client({ connectionString: t.url });
    await writer.connect();
    try {
      // A writer holds ROW EXCLUSIVE (an insert in an open transaction) longer than the budget:
      // the run goes on without tracking (and says so); rollups of inserts are unaffected.
      await writer.query("BEGIN");
      await insertKeyedRows(writer, grid(new Date("2026-06-10T11:00:00Z"), 1, 1, "w"));
      const refused = await runRollup(t.db, config(now, [policy(1_000)]));
      expect(refused.exitCode).toBe(0);
      const warning = refused.logs.find((l) => l.severity === "WARNING" && /change tracking/.test(l.message));
      expect(warning?.message).toMatch(/not installed/);
      expect(await triggersOnTree(TABLE)).toEqual([]);
      expect(await rollupProblems(rows, now)).toEqual([]);

      // Released after about a second, within a larger budget: installed after some retries.
      const release = new Promise((r) => setTimeout(r, 1_200)).then(() => writer.query("COMMIT"));
      const installed = await runRollup(t.db, config(now, [policy(30_000)]));
      await release;
      expectOk(installed);
      expect((await triggersOnTree(TABLE)).length).toBe(2);
    } finally {
      await writer.end();
    }
  });
});

describe("corrections through the parent", () => {
  beforeEach(reset);

  it("a corrected value, a changed device, a row moved to another hour and partition, a deleted device, a vanished key", async () => {
    const now = new Date("2026-06-01T03:30:00Z");
    // May 31 22:00 .. June 1 03:59 (hour 03 open); May's hours are in DEFAULT.
    const rows = new Map(grid(new Date("2026-05-31T22:00:00Z"), 6, 2).map((r) => [r.key, r]));
    await insertKeyedRows(t.pool, [...rows.values()]);
    expectOk(await runRollup(t.db, config(now)));
    expect(await rollupProblems([...rows.values()], now)).toEqual([]);

    const set = (key: string, change: Partial<KeyedRow>) => rows.set(key, { ...rows.get(key)!, ...change });
    // A corrected reading.
    await t.pool.query(
      `UPDATE ${TABLE} SET metrics = jsonb_set(metrics, '{temp}', '-7.5') WHERE message_id = 'r1-d1-1'`,
    );
    set("r1-d1-1", { metrics: { temp: -7.5 } });
    // A row that belonged to another device.
    await t.pool.query(`UPDATE ${TABLE} SET device_id = 'd2' WHERE message_id = 'r2-d1-0'`);
    set("r2-d1-0", { device: "d2" });
    // A row moved to another hour, from June (a child) back to May (DEFAULT).
    await t.pool.query(`UPDATE ${TABLE} SET ts = ts - interval '150 minutes' WHERE message_id = 'r2-d3-1'`);
    set("r2-d3-1", { ts: new Date(rows.get("r2-d3-1")!.ts.getTime() - 150 * MINUTE) });
    // The only "hum" of a bucket disappears: that rollup row must go.
    await t.pool.query(`UPDATE ${TABLE} SET metrics = metrics - 'hum' WHERE message_id = 'r4-d2-0'`);
    set("r4-d2-0", { metrics: { temp: (rows.get("r4-d2-0")!.metrics as { temp: number }).temp } });
    // A row of the open hour is corrected too.
    await t.pool.query(`UPDATE ${TABLE} SET metrics = '{"temp": 1000}' WHERE message_id = 'r5-d1-0'`);
    set("r5-d1-0", { metrics: { temp: 1000 } });
    // A device is deleted, with its rows.
    await t.pool.query(`DELETE FROM ${TABLE} WHERE device_id = 'd4'`);
    await t.pool.query(`DELETE FROM public.devices WHERE id = 'd4'`);
    for (const [k, r] of rows) if (r.device === "d4") rows.delete(k);

    const truth = () => [...rows.values()];
    const from = new Date("2026-05-31T18:00:00Z");
    const to = new Date("2026-06-01T05:00:00Z");
    // The read is right before any run: the changed hours come from raw rows.
    expect(await readProblems(truth(), from, to)).toEqual([]);
    expect(await readSources("d1", "temp", from, to)).toMatchObject({
      "2026-05-31T22:00:00.000Z": "rollup",
      "2026-05-31T23:00:00.000Z": "raw",
      "2026-06-01T00:00:00.000Z": "raw",
      "2026-06-01T03:00:00.000Z": "raw",
    });
    expect(await readSources("d4", "temp", from, to)).toEqual({});

    const run = await runRollup(t.db, config(now));
    expectOk(run);
    expect({
      rollups: await rollupProblems(truth(), now),
      read: await readProblems(truth(), from, to),
      pending: await pendingChanges(from),
    }).toEqual({
      rollups: [],
      read: [],
      // the open hour's records wait until it is final
      pending: ["d1@2026-06-01T03:00:00.000Z", "d4@2026-06-01T03:00:00.000Z"],
    });
    expect(Object.values(await readSources("d1", "temp", from, new Date("2026-06-01T03:00:00Z")))).toEqual(
      Array(5).fill("rollup"),
    );

    // The open hour becomes final: recomputed whole, its change record consumed.
    const later = new Date("2026-06-01T04:10:00Z");
    expectOk(await runRollup(t.db, config(later)));
    expect({ rollups: await rollupProblems(truth(), later), pending: await pendingChanges(from) }).toEqual({
      rollups: [],
      pending: [],
    });
  });

  it("an UPDATE still open during a run: the run does not wait; the read and the next run follow its commit", async () => {
    const now = new Date("2026-06-05T10:30:00Z");
    const rows = new Map(grid(new Date("2026-06-05T07:00:00Z"), 3, 1).map((r) => [r.key, r]));
    await insertKeyedRows(t.pool, [...rows.values()]);
    expectOk(await runRollup(t.db, config(now)));

    const writer = new pg.Client({ connectionString: t.url });
    await writer.connect();
    try {
      await writer.query("BEGIN");
      await writer.query(`UPDATE ${TABLE} SET metrics = '{"temp": 500}' WHERE message_id = 'r1-d2-0'`);
      await writer.query(`DELETE FROM ${TABLE} WHERE message_id = 'r2-d3-0'`);
      const before = [...rows.values()];
      const run = await Promise.race([
        runRollup(t.db, config(now)),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("the run waited on the open transaction")), 20_000),
        ),
      ]);
      expectOk(run);
      const from = new Date("2026-06-05T06:00:00Z");
      expect(await rollupProblems(before, now)).toEqual([]);
      expect(await readProblems(before, from, now)).toEqual([]);

      await writer.query("COMMIT");
      rows.set("r1-d2-0", { ...rows.get("r1-d2-0")!, metrics: { temp: 500 } });
      rows.delete("r2-d3-0");
      const after = [...rows.values()];
      expect(await readProblems(after, from, now)).toEqual([]);
      expectOk(await runRollup(t.db, config(now)));
      expect(await rollupProblems(after, now)).toEqual([]);
      expect(await pendingChanges(from)).toEqual([]);
    } finally {
      await writer.end();
    }
  });
});

describe("retention's deletes of expired rows leave the rollups that outlive them", () => {
  beforeEach(reset);

  /** Rollups the model expects once raw rows before `horizon` may be gone: older hours keep their first aggregates. */
  function withHorizon(original: readonly RawRow[], current: readonly RawRow[], horizon: Date, now: Date) {
    return new Map<string, Bucket>([
      ...expectedBuckets(original, horizon),
      ...expectedBuckets(current, hourOf(now), horizon),
    ]);
  }

  it("a partitioned table: dropped children and DEFAULT row deletes are not tracked; app deletes apply within the horizon only", async () => {
    const keep = { keep: "30 days", batchPauseMs: 0 };
    const policy = { ...POLICY, retention: keep };
    const now = new Date("2026-08-15T10:30:00Z");
    const horizon = new Date("2026-07-16T11:00:00Z"); // ceil(now - 30 days)
    // Every 7 hours from May 20 (DEFAULT) through June (a child retention drops) to now.
    const original: KeyedRow[] = [];
    for (let ts = Date.parse("2026-05-20T00:10:00Z"), i = 0; ts < now.getTime(); ts += 7 * HOUR, i++)
      original.push({ key: `k${i}`, device: DEVICES[i % 4]!, ts: new Date(ts), metrics: { temp: i % 50 } });
    await insertKeyedRows(t.pool, original);
    expectOk(await runRollup(t.db, config(now, [policy])));
    expect(bucketDiff(expectedBuckets(original, hourOf(now)), await storedBuckets(t.pool))).toEqual([]);

    const retention = await runRetention(
      t.db,
      makeConfig(t.url, [{ table: TABLE, timeColumn: "ts", retention: keep }], { now }),
    );
    expect(retention.exitCode, JSON.stringify(retention.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    expect(retention.summary.actions).toMatchObject({ delete_rows: 1, remove_partition: 1 });
    expect(await pendingChanges(new Date(0))).toEqual([]);

    // The application deletes device d1 with its rows, before and after the horizon.
    await t.pool.query(`DELETE FROM ${TABLE} WHERE device_id = 'd1'`);
    const left = await t.pool.query(`SELECT message_id FROM ${TABLE}`);
    const kept = new Set(left.rows.map((r) => r.message_id));
    const current = original.filter((r) => kept.has(r.key));
    expect(current.some((r) => r.ts < horizon)).toBe(true); // July's child straddles the cutoff

    const later = new Date(now.getTime() + HOUR);
    const laterHorizon = new Date(horizon.getTime() + HOUR);
    const run = await runRollup(t.db, config(later, [policy]));
    expectOk(run);
    expect(
      bucketDiff(withHorizon(original, current, laterHorizon, later), await storedBuckets(t.pool)),
    ).toEqual([]);
    expect(await pendingChanges(new Date(0))).toEqual([]);
    // The read serves the rollups of expired hours, and d1's deletion from the horizon on.
    const points = await readHourlySeries(t.db, {
      deviceId: "d1",
      metricKey: "temp",
      from: new Date("2026-05-20T00:00:00Z"),
      to: later,
    });
    expect(points.length).toBeGreaterThan(0);
    expect(points.every((p) => p.bucketTs < laterHorizon && p.source === "rollup")).toBe(true);
  });

  it("a plain table, whose row deletes do fire the triggers: timestamp column, integer group, an app session in another time zone", async () => {
    await t.pool.query(`
      DROP TABLE IF EXISTS public.fix_plain, public.fix_rollups;
      CREATE TABLE public.fix_plain (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sensor_id integer,
        recorded_at timestamp NOT NULL,
        temp double precision,
        ingest_xid xid8 DEFAULT pg_current_xact_id()
      );
      CREATE INDEX ON public.fix_plain (ingest_xid, recorded_at);
      CREATE TABLE public.fix_rollups (
        device_id text NOT NULL, metric_key text NOT NULL, bucket_ts timestamptz NOT NULL,
        sample_count bigint NOT NULL, sum double precision NOT NULL, min double precision NOT NULL,
        max double precision NOT NULL, avg double precision NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (device_id, metric_key, bucket_ts));`);
    const keep = { keep: "30 days", batchPauseMs: 0 };
    const policy = {
      table: "public.fix_plain",
      timeColumn: "recorded_at",
      partitioned: false,
      retention: keep,
      rollup: {
        target: "public.fix_rollups",
        groupBy: "sensor_id",
        metrics: { columns: ["temp"] },
        batchPauseMs: 0,
      },
    };
    const now = new Date("2026-08-15T10:30:00Z");
    const horizon = new Date("2026-07-16T11:00:00Z");
    const naive = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");
    type Row = { id: number; sensor: number; ts: Date; temp: number };
    const rows = new Map<number, Row>();
    const inserted = await t.pool.query(
      `INSERT INTO public.fix_plain (sensor_id, recorded_at, temp)
       SELECT 1 + g % 3, $1::timestamp + g * interval '5 hours', g % 40 FROM generate_series(0, 230) g
       RETURNING id, sensor_id, recorded_at AT TIME ZONE 'UTC' AS ts, temp`,
      [naive(new Date("2026-07-01T00:20:00Z"))],
    );
    for (const r of inserted.rows)
      rows.set(Number(r.id), { id: Number(r.id), sensor: r.sensor_id, ts: new Date(r.ts), temp: r.temp });
    const asRaw = (list: Iterable<Row>): RawRow[] =>
      [...list].map((r) => ({ device: String(r.sensor), ts: r.ts, metrics: { temp: r.temp } }));
    const original = asRaw(rows.values());
    const stored = () => storedBuckets(t.pool, "public.fix_rollups");
    expectOk(await runRollup(t.db, config(now, [policy])));
    expect(bucketDiff(expectedBuckets(original, hourOf(now)), await stored())).toEqual([]);

    // An application session in Asia/Kolkata corrects, moves, reassigns and deletes rows.
    const app = new pg.Client({
      connectionString: t.url,
      options: "-c TimeZone=Asia/Kolkata -c search_path=pg_catalog",
    });
    await app.connect();
    try {
      // Rows 190..200 lie between the horizon and now (every 5 hours from July 1).
      const ids = [...rows.keys()];
      const pick = (i: number) => ids[200 - i]!;
      await app.query("UPDATE public.fix_plain SET temp = temp + 0.25 WHERE id = ANY($1)", [
        [pick(1), pick(7)],
      ]);
      for (const id of [pick(1), pick(7)]) rows.get(id)!.temp += 0.25;
      await app.query(
        "UPDATE public.fix_plain SET recorded_at = recorded_at + interval '40 minutes' WHERE id = $1",
        [pick(3)],
      );
      rows.get(pick(3))!.ts = new Date(rows.get(pick(3))!.ts.getTime() + 40 * MINUTE);
      await app.query("UPDATE public.fix_plain SET sensor_id = 9 WHERE id = $1", [pick(4)]);
      rows.get(pick(4))!.sensor = 9;
      await app.query("DELETE FROM public.fix_plain WHERE sensor_id = 3");
      for (const [id, r] of rows) if (r.sensor === 3) rows.delete(id);
    } finally {
      await app.end();
    }
    expectOk(await runRollup(t.db, config(now, [policy])));
    const afterApp = withHorizon(original, asRaw(rows.values()), horizon, now);
    expect(bucketDiff(afterApp, await stored())).toEqual([]);

    // Retention deletes the expired rows from the table itself: its statements fire the triggers.
    const retention = await runRetention(
      t.db,
      makeConfig(
        t.url,
        [{ table: "public.fix_plain", timeColumn: "recorded_at", partitioned: false, retention: keep }],
        {
          now,
        },
      ),
    );
    expect(retention.exitCode, JSON.stringify(retention.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    const recorded = await pendingChanges(new Date(0), { schema: "public", name: "fix_plain" });
    expect(recorded.length).toBeGreaterThan(0);
    for (const [id, r] of rows) if (r.ts < new Date("2026-07-16T10:30:00Z")) rows.delete(id);

    const later = new Date(now.getTime() + HOUR);
    const laterHorizon = new Date(horizon.getTime() + HOUR);
    const run = await runRollup(t.db, config(later, [policy]));
    expectOk(run);
    // Hours before the new horizon keep what the previous run left; later ones follow the rows.
    const frozen = [...afterApp].filter(([k]) => new Date(k.split("|")[2]!) < laterHorizon);
    const expected = new Map([
      ...frozen,
      ...expectedBuckets(asRaw(rows.values()), hourOf(later), laterHorizon),
    ]);
    expect(bucketDiff(expected, await stored())).toEqual([]);
    // (Rows dated after `later` were deleted too: their open hours' records wait.)
    expect(await pendingChanges(new Date(0), { schema: "public", name: "fix_plain" }, hourOf(later))).toEqual(
      [],
    );
  });
});

describe("property", () => {
  beforeEach(reset);

  const pickKeys = fc.array(fc.nat(), { minLength: 1, maxLength: 6 });
  const value = fc.oneof(
    fc.double({ min: -1e3, max: 1e3, noNaN: true, noDefaultInfinity: true }),
    fc.integer({ min: -50, max: 50 }),
    fc.constantFrom(null, "n/a", true),
  );
  const doc = fc.record({ temp: value, hum: value }, { requiredKeys: [] });
  const step = fc.oneof(
    fc.record({
      kind: fc.constant("insert" as const),
      rows: fc.array(
        fc.record({
          device: fc.constantFrom(...DEVICES),
          offsetMinutes: fc.integer({ min: -36 * 60, max: 90 }),
          metrics: doc,
        }),
        { minLength: 1, maxLength: 12 },
      ),
    }),
    fc.record({ kind: fc.constant("set_metrics" as const), picks: pickKeys, metrics: doc }),
    fc.record({
      kind: fc.constant("set_device" as const),
      picks: pickKeys,
      device: fc.constantFrom(...DEVICES),
    }),
    fc.record({
      kind: fc.constant("move" as const),
      picks: pickKeys,
      minutes: fc.oneof(
        fc.integer({ min: -300, max: 300 }),
        fc.integer({ min: -3 * 24 * 60, max: 3 * 24 * 60 }),
      ),
    }),
    fc.record({ kind: fc.constant("delete" as const), picks: pickKeys }),
    fc.record({ kind: fc.constant("delete_device" as const), device: fc.constantFrom(...DEVICES) }),
    fc.record({
      kind: fc.constant("run" as const),
      advanceMinutes: fc.integer({ min: 0, max: 150 }),
      // one task, or two tasks each owning half of the groups (and their change records)
      tasks: fc.constantFrom(1, 1, 2),
    }),
  );

  let partitionsReady = false;

  it("random inserts, corrections, moves and deletes through the parent: rollups equal a GROUP BY after every run, the read before it", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 3, maxLength: 14 }), async (steps) => {
        await reset();
        if (!partitionsReady) {
          // (Another test's retention run may have dropped June.)
          const pm = await runPartitionManager(
            t.db,
            makeConfig(t.url, [{ table: TABLE, timeColumn: "ts" }], { now: BASE }),
          );
          expect(pm.exitCode).toBe(0);
          partitionsReady = true;
        }
        const rows = new Map<string, KeyedRow>();
        let next = 0;
        let now = new Date(BASE.getTime() + 37 * MINUTE);
        const chosen = (picks: number[]) => {
          const keys = [...rows.keys()].sort();
          return keys.length === 0 ? [] : [...new Set(picks.map((p) => keys[p % keys.length]!))];
        };
        for (const s of [...steps, { kind: "run" as const, advanceMinutes: 61, tasks: 1 }]) {
          switch (s.kind) {
            case "insert": {
              const batch = s.rows.map((r) => ({
                key: `p${next++}`,
                device: r.device,
                ts: new Date(now.getTime() + r.offsetMinutes * MINUTE),
                metrics: r.metrics,
              }));
              await insertKeyedRows(t.pool, batch);
              for (const r of batch) rows.set(r.key, r);
              break;
            }
            case "set_metrics": {
              const keys = chosen(s.picks);
              await t.pool.query(`UPDATE ${TABLE} SET metrics = $2::jsonb WHERE message_id = ANY($1)`, [
                keys,
                JSON.stringify(s.metrics),
              ]);
              for (const k of keys) rows.set(k, { ...rows.get(k)!, metrics: s.metrics });
              break;
            }
            case "set_device": {
              const keys = chosen(s.picks);
              await t.pool.query(`UPDATE ${TABLE} SET device_id = $2 WHERE message_id = ANY($1)`, [
                keys,
                s.device,
              ]);
              for (const k of keys) rows.set(k, { ...rows.get(k)!, device: s.device });
              break;
            }
            case "move": {
              const keys = chosen(s.picks);
              await t.pool.query(
                `UPDATE ${TABLE} SET ts = ts + make_interval(mins => $2) WHERE message_id = ANY($1)`,
                [keys, s.minutes],
              );
              for (const k of keys) {
                const r = rows.get(k)!;
                rows.set(k, { ...r, ts: new Date(r.ts.getTime() + s.minutes * MINUTE) });
              }
              break;
            }
            case "delete": {
              const keys = chosen(s.picks);
              await t.pool.query(`DELETE FROM ${TABLE} WHERE message_id = ANY($1)`, [keys]);
              for (const k of keys) rows.delete(k);
              break;
            }
            case "delete_device": {
              await t.pool.query(`DELETE FROM ${TABLE} WHERE device_id = $1`, [s.device]);
              for (const [k, r] of rows) if (r.device === s.device) rows.delete(k);
              break;
            }
            case "run": {
              const truth = [...rows.values()];
              const from = new Date(BASE.getTime() - 5 * DAY);
              const to = new Date(now.getTime() + 6 * DAY);
              expect(await readProblems(truth, from, to), "read before the run").toEqual([]);
              now = new Date(now.getTime() + s.advanceMinutes * MINUTE);
              for (let index = 0; index < s.tasks; index++)
                expectOk(await runRollup(t.db, config(now), { shard: { count: s.tasks, index } }));
              expect(
                await rollupProblems(truth, now),
                `rollups after the run at ${now.toISOString()}`,
              ).toEqual([]);
              break;
            }
          }
        }
      }),
      { numRuns: 40, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
    );
  }, 120_000);
});
