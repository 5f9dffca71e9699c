// rollup-hourly operations: never blocks writers, two runs at once, SIGKILL mid-rebuild then
// convergence, raw retention leaves rollups alone, bad rollup policies exit 2.
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CHANGE_TRIGGERS, changeTriggerSql } from "../../shared/rollups/changes.ts";
import { catalogSnapshot } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import {
  makeConfig,
  runCli,
  runPartitionManager,
  runRetention,
  runRollup,
  startCli,
} from "../support/jobs.ts";

let t: TestDatabase;
const NOW = "2026-05-20T06:30:00Z";
const POLICY = {
  table: "public.telemetry_points",
  timeColumn: "ts",
  rollup: { batchPauseMs: 0, backfillBatchHours: 6 },
};

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) SELECT 'dev' || g FROM generate_series(1, 50) g`);
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: "public.telemetry_points", timeColumn: "ts" }], {
      now: "2026-02-01T00:00:00Z",
    }),
  );
  expect(pm.exitCode).toBe(0);
});
afterAll(async () => {
  await t.drop();
});
beforeEach(async () => {
  await t.pool.query(`TRUNCATE public.telemetry_points, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
});

/** n rows over the `days` days before NOW: 50 devices, two numeric keys and a string. */
async function load(n: number, days: number) {
  await t.pool.query(
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'dev' || (g % 50 + 1), $2::timestamptz - (g::float8 / $1) * $3 * interval '1 day',
            jsonb_build_object('temp', g % 40, 'hum', (g % 97) / 3.0, 'fw', 'v1')
       FROM generate_series(1, $1) g`,
    [n, NOW, days],
  );
}

/** Buckets that differ from a GROUP BY over the raw rows (final hours only). */
async function mismatches(): Promise<number> {
  const r = await t.pool.query(
    `WITH truth AS (
       SELECT p.device_id, e.key, date_trunc('hour', p.ts, 'UTC') AS h, count(*) AS n, sum(e.value::float8) AS s,
              min(e.value::float8) AS lo, max(e.value::float8) AS hi
         FROM public.telemetry_points p, jsonb_each(p.metrics) e
        WHERE jsonb_typeof(e.value) = 'number' AND p.ts < date_trunc('hour', $1::timestamptz, 'UTC')
        GROUP BY 1, 2, 3)
     SELECT count(*)::int AS n FROM truth FULL JOIN public.telemetry_rollups_hourly r
         ON r.device_id = truth.device_id AND r.metric_key = truth.key AND r.bucket_ts = truth.h
      WHERE truth.n IS DISTINCT FROM r.sample_count OR truth.lo IS DISTINCT FROM r.min
         OR truth.hi IS DISTINCT FROM r.max OR abs(truth.s - r.sum) > 1e-6 * greatest(1, abs(truth.s))
         OR truth.s IS NULL OR r.sum IS NULL`,
    [NOW],
  );
  return r.rows[0].n;
}

describe("rollup-hourly operations", () => {
  it("a concurrent writer never waits on a lock held by the job (rebuild and incremental runs)", async () => {
    await load(150_000, 40);
    // Change tracking is installed first, as the first run of a deployment does: CREATE TRIGGER
    // takes SHARE ROW EXCLUSIVE for a moment (under lock_timeout), once. What this test holds the
    // job to is every run after that.
    const policy = makeConfig(t.url, [POLICY], { now: NOW }).policies[0]!;
    for (const trigger of CHANGE_TRIGGERS) await changeTriggerSql(policy, trigger).execute(t.db);
    const writer = new pg.Client({ connectionString: t.url, application_name: "test-writer" });
    const monitor = new pg.Client({ connectionString: t.url });
    await writer.connect();
    await monitor.connect();
    await writer.query("SET lock_timeout = '500ms'");
    let stop = false;
    let inserted = 0;
    const errors: string[] = [];
    const waits: string[] = [];
    const writing = (async () => {
      while (!stop) {
        try {
          await writer.query(
            `INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('dev7', $1::timestamptz - random() * interval '30 days', '{"temp": 1}')`,
            [NOW],
          );
          inserted++;
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    })();
    const watching = (async () => {
      while (!stop) {
        const r = await monitor.query(
          // This database's writer only: the convert tests' writers bear the same name.
          `SELECT wait_event FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'test-writer' AND wait_event_type = 'Lock'`,
        );
        waits.push(...r.rows.map((row) => row.wait_event));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    try {
      const first = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW }));
      const second = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW }));
      expect([first.exitCode, second.exitCode]).toEqual([0, 0]);
      expect(first.summary.actions.rebuild_batch).toBeGreaterThan(10);
    } finally {
      stop = true;
      await Promise.all([writing, watching]);
      await writer.end();
      await monitor.end();
    }
    expect(errors).toEqual([]);
    expect(waits).toEqual([]);
    expect(inserted).toBeGreaterThan(20);
    expectOk(await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW })));
    expect(await mismatches()).toBe(0);
  });

  it("two runs at once: one does the work, the other skips with exit 0", async () => {
    await load(20_000, 5);
    const config = makeConfig(t.url, [POLICY], { now: NOW });
    const [a, b] = await Promise.all([runRollup(t.db, config), runRollup(t.db, config)]);
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    expect([a.status, b.status].sort()).toEqual(["ok", "skipped"]);
    expect(await mismatches()).toBe(0);
  });

  it("SIGKILL in the middle of a rebuild: the next run resumes from the saved batch and converges", async () => {
    await load(60_000, 20);
    const cli = startCli(["rollup-hourly", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POLICY] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-rollup-batch",
    });
    await cli.waitFor("paused at fault point");
    cli.child.kill("SIGKILL");
    await cli.done;
    const saved = await t.pool.query(
      "SELECT backfill_next, backfill_to FROM telemetry_jobs.rollup_watermarks",
    );
    expect(saved.rows[0].backfill_next < saved.rows[0].backfill_to).toBe(true); // stopped part-way
    expect(await mismatches()).toBeGreaterThan(0);

    const resumed = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW }));
    expectOk(resumed);
    // It went on from the saved batch: fewer batches than a rebuild from scratch (20 days / 6 h).
    expect(resumed.summary.actions.rebuild_batch).toBeLessThan(Math.ceil((20 * 24) / 6));
    expect(await mismatches()).toBe(0);
  });

  it("--from/--to rebuilds exactly those hours from raw rows (repairing a damaged bucket), and refuses hours before the raw horizon", async () => {
    await load(20_000, 3);
    const config = makeConfig(t.url, [POLICY], { now: NOW });
    expectOk(await runRollup(t.db, config));
    // Damage two buckets: one inside the rebuild range, one outside it.
    await t.pool.query(`UPDATE public.telemetry_rollups_hourly SET sample_count = 999
                         WHERE device_id = 'dev1' AND metric_key = 'temp' AND bucket_ts IN ('2026-05-19T10:00:00Z', '2026-05-18T10:00:00Z')`);
    const rebuilt = await runRollup(t.db, config, {
      rebuild: { from: new Date("2026-05-19T00:00:00Z"), to: new Date("2026-05-20T00:00:00Z") },
    });
    expectOk(rebuilt);
    expect(rebuilt.summary.actions.rebuild_batch).toBe(4); // 24 hours in batches of 6
    const left = await t.pool.query(
      "SELECT bucket_ts FROM public.telemetry_rollups_hourly WHERE sample_count = 999 ORDER BY 1",
    );
    expect(left.rows.map((r) => r.bucket_ts.toISOString())).toEqual(["2026-05-18T10:00:00.000Z"]);

    const withRetention = { ...POLICY, retention: { keep: "30 days" } };
    const refused = await runRollup(t.db, makeConfig(t.url, [withRetention], { now: NOW }), {
      rebuild: { from: new Date("2026-03-01T00:00:00Z"), to: new Date("2026-03-02T00:00:00Z") },
    });
    expect(refused.exitCode).toBe(2);
    expect(refused.logs.map((l) => l.message).join("\n")).toMatch(/before the raw-data horizon/);
  });

  it("a --from/--to rebuild while the first run's rebuild is still pending covers both: no hour is left out", async () => {
    await load(30_000, 10);
    const tight = { ...POLICY, rollup: { ...POLICY.rollup, timeBudgetMs: 1 } };
    expectOk(await runRollup(t.db, makeConfig(t.url, [tight], { now: NOW })));
    const pending = await t.pool.query(
      "SELECT backfill_next < backfill_to AS pending FROM telemetry_jobs.rollup_watermarks",
    );
    expect(pending.rows[0].pending).toBe(true); // the budget stopped the history rebuild part-way
    const rebuilt = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW }), {
      rebuild: { from: new Date("2026-05-19T00:00:00Z"), to: new Date("2026-05-20T00:00:00Z") },
    });
    expectOk(rebuilt);
    expect(rebuilt.logs.some((l) => /merged with the rebuild already pending/.test(l.message))).toBe(true);
    expect(await mismatches()).toBe(0);
  });

  it("after three days without runs, the newly final hours beyond one batch become rebuild work and the result is exact", async () => {
    await load(20_000, 3);
    const before = new Date(new Date(NOW).getTime() - 72 * 3_600_000);
    expectOk(await runRollup(t.db, makeConfig(t.url, [POLICY], { now: before })));
    const run = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: NOW }));
    expectOk(run);
    expect(run.logs.some((l) => /^rebuild scheduled/.test(l.message))).toBe(true);
    expect(run.summary.actions.rebuild_batch).toBeGreaterThanOrEqual(10); // 66 hours in batches of 6
    expect(await mismatches()).toBe(0);
  });

  it("raw retention drops raw partitions; the rollups of those hours stay, and later runs leave them alone", async () => {
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics)
       SELECT 'dev' || (g % 50 + 1), '2026-02-01'::timestamptz + g * interval '5 minutes', jsonb_build_object('temp', g % 30)
         FROM generate_series(0, 12 * 24 * 100) g`,
    ); // 2026-02-01 .. ~2026-05-12
    const withRetention = { ...POLICY, retention: { keep: "45 days", maxDropsPerRun: 5 } };
    expectOk(await runRollup(t.db, makeConfig(t.url, [withRetention], { now: NOW })));
    const before = await t.pool.query(
      "SELECT count(*)::int AS n, sum(sample_count)::bigint AS s FROM public.telemetry_rollups_hourly WHERE bucket_ts < '2026-04-01'",
    );
    expect(before.rows[0].n).toBeGreaterThan(1000);

    const retention = await runRetention(t.db, makeConfig(t.url, [withRetention], { now: NOW }));
    expect(retention.exitCode).toBe(0);
    expect(retention.summary.actions.remove_partition).toBeGreaterThanOrEqual(2); // February and March
    const rawLeft = await t.pool.query(
      "SELECT count(*)::int AS n FROM public.telemetry_points WHERE ts < '2026-04-01'",
    );
    expect(rawLeft.rows[0].n).toBe(0);

    // A late row for a dropped month (it lands in DEFAULT) must not shrink its hour's rollup.
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('dev1', '2026-02-10T10:30:00Z', '{"temp": 99}')`,
    );
    const again = await runRollup(t.db, makeConfig(t.url, [withRetention], { now: NOW }));
    expectOk(again);
    expect(again.logs.some((l) => /before the raw-data horizon/.test(l.message))).toBe(true);
    const after = await t.pool.query(
      "SELECT count(*)::int AS n, sum(sample_count)::bigint AS s FROM public.telemetry_rollups_hourly WHERE bucket_ts < '2026-04-01'",
    );
    expect(after.rows[0]).toEqual(before.rows[0]);
  });
});

function expectOk(run: { exitCode: number; logs: { severity?: string }[] }) {
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
}

describe("bad rollup policies exit 2 before changing anything", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "metrics columns that are jsonb",
      { metrics: { columns: ["metrics"] } },
      /rollup\.metrics\.columns.*not numeric/,
    ],
    ["an unknown group column", { groupBy: "sensor" }, /rollup\.groupBy.*"sensor" does not exist/],
    [
      "a target in a schema that does not exist",
      { target: "nope.rollups" },
      /rollup\.target: nope\.rollups: schema "nope" does not exist/,
    ],
    ["an unknown key", { keep: "1 year" }, /tables\[0\]\.rollup/],
  ];
  it.each(cases)("%s", async (_name, rollup, message) => {
    const before = await catalogSnapshot(t.url);
    const { code, lines } = await runCli(["rollup-hourly", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
        tables: [{ ...POLICY, rollup: { ...POLICY.rollup, ...rollup } }],
      }),
    });
    expect(code).toBe(2);
    expect(lines.map((l) => l.message).join("\n")).toMatch(message);
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });

  it("a table whose ingest_xid is not xid8: exit 2, naming the column and its type", async () => {
    await t.pool.query(
      "CREATE TABLE IF NOT EXISTS public.legacy (device_id text, ts timestamptz NOT NULL, metrics jsonb, ingest_xid bigint)",
    );
    const before = await catalogSnapshot(t.url);
    const { code, lines } = await runCli(["rollup-hourly", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
        tables: [{ table: "public.legacy", timeColumn: "ts", partitioned: false, rollup: {} }],
      }),
    });
    expect(code).toBe(2);
    expect(lines.map((l) => l.message).join("\n")).toMatch(/column "ingest_xid" of public\.legacy is bigint/);
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });

  it("an ingest_xid with another default: exit 2 before adoption creates anything", async () => {
    await t.pool.query(
      "CREATE TABLE IF NOT EXISTS public.zero_xid (device_id text, ts timestamptz NOT NULL, metrics jsonb, ingest_xid xid8 DEFAULT '0')",
    );
    const before = await catalogSnapshot(t.url);
    const { code, lines } = await runCli(["rollup-hourly", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
        tables: [
          {
            table: "public.zero_xid",
            timeColumn: "ts",
            partitioned: false,
            rollup: { target: "public.zero_xid_hourly" },
          },
        ],
      }),
    });
    expect(code).toBe(2);
    expect(lines.map((l) => l.message).join("\n")).toMatch(/tables\[0\]\.table: .*default/);
    // Not even the target: a refusal leaves the database as it was.
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });

  it("--from without --to, and a bad CLOUD_RUN_TASK_INDEX, are usage errors", async () => {
    const env = { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POLICY] }) };
    expect((await runCli(["rollup-hourly", "--from", "2026-05-01T00:00:00Z"], env)).code).toBe(2);
    const bad = await runCli(["rollup-hourly"], {
      ...env,
      CLOUD_RUN_TASK_COUNT: "2",
      CLOUD_RUN_TASK_INDEX: "2",
    });
    expect(bad.code).toBe(2);
    expect(bad.lines.map((l) => l.message).join("\n")).toMatch(/CLOUD_RUN_TASK_INDEX/);
  });
});
