// Adoption of EdgeWatch's database, end to end through the CLI: its unpartitioned
// public.telemetry_points (varchar uuid key, FK to devices, unique (device_id, message_id)) with about
// 14 months of rows. telemetry-jobs installs beside it without touching public, converts the table
// online while the application keeps inserting, adopts it for hourly rollups (the target table made
// by the product from the policy), then partition-manager, rollup-hourly and retention (12 months,
// exact cutoff) manage it. The rollups equal a GROUP BY over the raw rows; the application's queries
// answer as before, less the expired rows.
//
// The steps share state and run in order; a step that needs the earlier ones' results reads them
// from the variables below.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliEnv, cliOk } from "../support/adoption.ts";
import { schemaCatalog } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { createLegacyTable, legacyTable, startLoad, tableChecksum } from "../support/legacy-tables.ts";

const table = legacyTable("edgewatch", "public");
const ROWS = 40_000;
const DAYS = 425;
const DEVICE = "dev-7";
const WEEK_MS = 7 * 86_400_000;
/** The rollup target's own entry: the product creates it partitioned, partition-manager manages it. */
const ROLLUP_TARGET = {
  table: "public.telemetry_points_hourly",
  timeColumn: "bucket_ts",
  interval: "monthly",
  premake: 3,
};

let t: TestDatabase;
// The job's clock: fixed when the rows are made (they are dated back from the database's now()).
let now: Date;
let cutoff: Date;
let policy: Record<string, unknown>;
let env: Record<string, string>;
/** Every row the test and the load wrote through the application's insert, by key. */
const written = new Map<string, { device: string; message: string; time: Date }>();
let before: AppAnswers;
/** The rows that were there before conversion and are not expired: count and checksum. */
let kept: { rows: number; checksum: string };
let expiredBefore: number;
let rollupsBeforeRetention: { buckets: number; missing: string[]; extra: string[] };

/**
 * The rollup table against a GROUP BY over the raw rows of the final hours (numbers in the metrics
 * document only), each side rounded the same way: the buckets one has and the other lacks.
 */
async function rollupsVersusRaw(finalBefore: Date) {
  const r = await t.pool.query(
    `WITH raw AS (
       SELECT p.device_id AS g, e.key, date_trunc('hour', p.ts AT TIME ZONE 'UTC') AS h, count(*) AS n,
              round(sum(e.value::text::numeric), 4) AS s, min(e.value::text::float8) AS lo, max(e.value::text::float8) AS hi
         FROM public.telemetry_points p, jsonb_each(p.metrics) e
        WHERE jsonb_typeof(e.value) = 'number' AND p.ts < $1
        GROUP BY 1, 2, 3),
     rolled AS (
       SELECT device_id AS g, metric_key AS key, bucket_ts AT TIME ZONE 'UTC' AS h, sample_count AS n,
              round(sum::numeric, 4) AS s, min AS lo, max AS hi
         FROM public.telemetry_points_hourly)
     SELECT (SELECT count(*)::int FROM rolled) AS buckets,
            (SELECT coalesce(array_agg(format('%s|%s|%s', g, key, h)), '{}') FROM (SELECT * FROM raw EXCEPT SELECT * FROM rolled) x) AS missing,
            (SELECT coalesce(array_agg(format('%s|%s|%s', g, key, h)), '{}') FROM (SELECT * FROM rolled EXCEPT SELECT * FROM raw) x) AS extra`,
    [finalBefore],
  );
  return r.rows[0] as { buckets: number; missing: string[]; extra: string[] };
}

interface AppAnswers {
  lastWeek: Row[];
  latest: Row[];
  byMessage: Row[];
  history: Row[];
}
type Row = Record<string, unknown> & { ts: Date };

/**
 * EdgeWatch's queries. They read the rows the application wrote before conversion (not the load's,
 * which are checked by key), so that before and after can be compared.
 */
async function appAnswers(): Promise<AppAnswers> {
  const mine = "message_id NOT LIKE 'w-%' AND message_id NOT LIKE 'app-%'";
  // One device's last 7 days, on the dashboard.
  const lastWeek = await t.pool.query(
    `SELECT id, message_id, ts, metrics FROM public.telemetry_points
      WHERE device_id = $1 AND ts > $2 AND ts <= $3 AND ${mine} ORDER BY ts DESC`,
    [DEVICE, new Date(now.getTime() - WEEK_MS), now],
  );
  // Latest reading per device.
  const latest = await t.pool.query(
    `SELECT DISTINCT ON (device_id) device_id, id, message_id, ts, metrics FROM public.telemetry_points
      WHERE ${mine} ORDER BY device_id, ts DESC`,
  );
  // Lookup by message id (ingestion's duplicate check): a recent one and one older than a year.
  const byMessage = await t.pool.query(
    `SELECT id, device_id, message_id, ts, metrics FROM public.telemetry_points
      WHERE device_id = ANY ($1) AND message_id = ANY ($2) ORDER BY message_id`,
    [
      ["dev-101", "dev-191"],
      ["m-100", `m-${ROWS - 10}`],
    ],
  );
  // One device's whole history.
  const history = await t.pool.query(
    `SELECT id, message_id, ts FROM public.telemetry_points WHERE device_id = $1 AND ${mine} ORDER BY ts`,
    [DEVICE],
  );
  return { lastWeek: lastWeek.rows, latest: latest.rows, byMessage: byMessage.rows, history: history.rows };
}

/** EdgeWatch's insert: its own column list; the key and created_at come from the defaults. */
async function appInsert(device: string, message: string, time: Date): Promise<string> {
  const r = await t.pool.query(
    `INSERT INTO public.telemetry_points (device_id, message_id, ts, metrics)
     VALUES ($1, $2, $3, jsonb_build_object('temp', 20.5, 'rh', 40)) RETURNING id`,
    [device, message, time],
  );
  written.set(r.rows[0].id, { device, message, time });
  return r.rows[0].id;
}

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  await createLegacyTable(t.pool, table, ROWS, DAYS);
  now = new Date((await t.pool.query("SELECT now() AS now")).rows[0].now);
  now.setUTCMilliseconds(0);
  // Computed as the product does: 12 calendar months back in UTC, clamped to the month's last day.
  cutoff = (await t.pool.query("SELECT $1::timestamptz - interval '12 months' AS c", [now])).rows[0].c;
  policy = {
    table: table.qualified,
    timeColumn: table.timeColumn,
    interval: "monthly",
    premake: 3,
    retention: { keep: "12 months", exactCutoff: true },
    rollup: { target: "public.telemetry_points_hourly", backfillBatchHours: 744 },
  };
  env = cliEnv(t.url, [policy, ROLLUP_TARGET]);
}, 60_000);
afterAll(async () => {
  await t?.drop();
});

describe("adopting EdgeWatch's telemetry_points in public", () => {
  it("1. migrate up installs telemetry_jobs and leaves public's catalog identical", async () => {
    const catalog = await schemaCatalog(t.url, "public");
    await cliOk(["migrate", "up"], env);
    expect(await schemaCatalog(t.url, "public")).toEqual(catalog);
  }, 60_000);

  it("2. the application's queries and insert, before conversion", async () => {
    before = await appAnswers();
    expect(before.lastWeek.length).toBeGreaterThan(0);
    expect(before.latest.length).toBe(200);
    expect(before.byMessage.map((r) => r.message_id)).toEqual(["m-100", `m-${ROWS - 10}`]);
    // The data spans about 14 months: some of it is past the 12 months kept.
    const old = await t.pool.query("SELECT count(*)::int AS n FROM public.telemetry_points WHERE ts < $1", [
      cutoff,
    ]);
    expiredBefore = old.rows[0].n;
    // Row g is dated g * (DAYS days / ROWS) before the rows were made, and `now` is a little later.
    const step = (DAYS * 86_400_000) / ROWS;
    const firstExpired = Math.ceil((now.getTime() - cutoff.getTime()) / step);
    expect(expiredBefore).toBeGreaterThanOrEqual(ROWS - firstExpired - 1);
    expect(expiredBefore).toBeLessThanOrEqual(ROWS - firstExpired + 1);
    expect(expiredBefore).toBeGreaterThan(4_000);
    kept = await tableChecksum(t.pool, table, `ts >= '${cutoff.toISOString()}'`);
    expect(kept.rows).toBe(ROWS - expiredBefore);

    await appInsert(DEVICE, "app-before-convert", new Date(now.getTime() - 60_000));
  });

  it("3. migrate convert under a steady insert load: no failed insert, no row lost or duplicated", async () => {
    const whole = await tableChecksum(t.pool, table);
    const load = await startLoad(t.url, table, 150);
    await new Promise((r) => setTimeout(r, 1000));
    const run = await cliOk(
      [
        "migrate",
        "convert",
        "--table",
        table.qualified,
        "--drop-unique",
        "telemetry_points_device_message_key",
        "--progress-every-s",
        "1",
      ],
      env,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const { writer, reader } = await load.stop();
    expect(writer.errors).toEqual([]);
    expect(reader.errors).toEqual([]);
    expect(writer.written.length).toBeGreaterThan(100);
    expect(run.lines.some((l) => String(l.message).startsWith("verified:"))).toBe(true);
    const kind = await t.pool.query("SELECT relkind::text AS k FROM pg_class WHERE oid = $1::regclass", [
      table.qualified,
    ]);
    expect(kind.rows[0].k).toBe("p");

    // Every row that was there is there once, unchanged; every row the load wrote is there once, as
    // written; nothing else is.
    for (const w of writer.written) {
      written.set(w.key, { device: w.device, message: "", time: w.time });
    }
    const loadKeys = writer.written.map((w) => w.key);
    const old = await tableChecksum(t.pool, table, `NOT (id = ANY ('{${loadKeys.join(",")}}'::text[]))`);
    expect(old).toEqual(whole);
    const found = await t.pool.query(
      "SELECT id, device_id, ts, (metrics->>'temp')::float8 AS value FROM public.telemetry_points WHERE id = ANY ($1)",
      [loadKeys],
    );
    const byKey = new Map(found.rows.map((r) => [r.id, r]));
    expect(byKey.size).toBe(loadKeys.length);
    for (const w of writer.written) {
      const r = byKey.get(w.key)!;
      expect([r.device_id, r.ts.getTime(), Number(r.value)]).toEqual([w.device, w.time.getTime(), w.value]);
    }
    const counts = await t.pool.query(
      "SELECT count(*)::int AS n, count(DISTINCT id)::int AS keys FROM public.telemetry_points",
    );
    expect(counts.rows[0]).toEqual({ n: whole.rows + loadKeys.length, keys: whole.rows + loadKeys.length });
  }, 120_000);

  it("4. partition-manager keeps months ready after the conversion's boundary", async () => {
    await cliOk(["partition-manager", "--now", now.toISOString()], env);
    const parts = await t.pool.query(
      `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.telemetry_points'::regclass ORDER BY 1`,
    );
    const names = parts.rows.map((r) => r.name);
    expect(names).toContain("telemetry_points_history");
    expect(names).toContain("telemetry_points_default");
    // The three months past the current one each have a partition of their own, or (the next one,
    // when the conversion ran late in the month) are still the historical partition's.
    const month = (offset: number) => {
      const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
      return `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
    };
    const history = parts.rows.find((r) => r.name === "telemetry_points_history")!;
    const boundary = /TO \('([^']+)'\)/.exec(history.bound)![1]!;
    const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    if (new Date(boundary.replace(" ", "T").replace(/\+00$/, "Z")) <= nextMonth)
      expect(names).toContain(`telemetry_points_p${month(1)}`);
    for (const offset of [2, 3]) expect(names).toContain(`telemetry_points_p${month(offset)}`);
    // The application's insert lands in a new month's partition.
    const ahead = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 10));
    const id = await appInsert(DEVICE, "app-after-convert", ahead);
    const where = await t.pool.query(
      "SELECT tableoid::regclass::text AS part FROM public.telemetry_points WHERE id = $1",
      [id],
    );
    expect(where.rows[0].part).toBe(`telemetry_points_p${month(2)}`);
  }, 60_000);

  it("4b. adopt creates the rollup target; rollup-hourly's rollups equal a GROUP BY over the raw rows", async () => {
    const publicBefore = await schemaCatalog(t.url, "public");
    await cliOk(["adopt", "--dry-run", "--now", now.toISOString()], env);
    expect(await schemaCatalog(t.url, "public")).toEqual(publicBefore);
    await cliOk(["adopt", "--now", now.toISOString()], env);
    const kind = await t.pool.query(
      "SELECT relkind::text AS k FROM pg_class WHERE oid = 'public.telemetry_points_hourly'::regclass",
    );
    expect(kind.rows[0].k).toBe("p");
    await cliOk(["partition-manager", "--now", now.toISOString()], env);
    await cliOk(["rollup-hourly", "--now", now.toISOString()], env);
    // History before the target's first partition went to its DEFAULT: partition-manager moves it.
    await cliOk(["partition-manager", "--now", now.toISOString()], env);
    const left = await t.pool.query("SELECT count(*)::int AS n FROM public.telemetry_points_hourly_default");
    expect(left.rows[0].n).toBe(0);
    const finalBefore = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
    rollupsBeforeRetention = await rollupsVersusRaw(finalBefore);
    expect(rollupsBeforeRetention.missing).toEqual([]);
    expect(rollupsBeforeRetention.extra).toEqual([]);
    expect(rollupsBeforeRetention.buckets).toBeGreaterThan(10_000);
  }, 180_000);

  it("5. retention with exactCutoff removes every row older than 12 months and only those", async () => {
    // Late data from a device that was offline for a year: one reading at the cutoff itself (kept)
    // and one a millisecond before it (expired).
    const atCutoff = await appInsert("dev-3", "app-at-cutoff", cutoff);
    const justBefore = await appInsert("dev-3", "app-before-cutoff", new Date(cutoff.getTime() - 1));
    written.delete(justBefore);
    const total = (await tableChecksum(t.pool, table)).rows;
    await cliOk(["retention", "--now", now.toISOString()], env);
    // Retention removes raw rows only: the rollups of the expired hours stay.
    const rollups = await t.pool.query("SELECT count(*)::int AS n FROM public.telemetry_points_hourly");
    expect(rollups.rows[0].n).toBe(rollupsBeforeRetention.buckets);
    const left = await t.pool.query(
      "SELECT count(*) FILTER (WHERE ts < $1)::int AS old, count(*)::int AS n FROM public.telemetry_points",
      [cutoff],
    );
    expect(left.rows[0]).toEqual({ old: 0, n: total - expiredBefore - 1 });
    const edge = await t.pool.query("SELECT id FROM public.telemetry_points WHERE id = ANY ($1)", [
      [atCutoff, justBefore],
    ]);
    expect(edge.rows).toEqual([{ id: atCutoff }]);
    // The rows kept from before are all there, unchanged.
    const keys = [...written.keys()];
    expect(
      await tableChecksum(
        t.pool,
        table,
        `ts >= '${cutoff.toISOString()}' AND NOT (id = ANY ('{${keys.join(",")}}'::text[]))`,
      ),
    ).toEqual(kept);
    // And every row written through the application since.
    const mine = await t.pool.query(
      "SELECT count(*)::int AS n FROM public.telemetry_points WHERE id = ANY ($1)",
      [keys],
    );
    expect(mine.rows[0].n).toBe(keys.length);
  }, 120_000);

  it("6. the application's queries answer as before, less the expired rows", async () => {
    const after = await appAnswers();
    const live = (rows: Row[]) => rows.filter((r) => r.ts.getTime() >= cutoff.getTime());
    expect(after.lastWeek).toEqual(before.lastWeek);
    expect(after.latest).toEqual(before.latest);
    expect(after.byMessage).toEqual(live(before.byMessage));
    expect(after.byMessage.map((r) => r.message_id)).toEqual(["m-100"]);
    expect(after.history).toEqual(live(before.history));
    expect(after.history.length).toBeLessThan(before.history.length);
    // The insert still works as the application writes it.
    await appInsert("dev-9", "app-at-the-end", new Date());
  });
});
