// Benchmark 3: rollup-hourly. Twelve months of history, then one new hour of 200k rows.
// Measured in one run, on one server: the incremental run (what the job does every hour) against
//   - recomputing the last 168 hours (what an earlier implementation did every run),
//   - recomputing everything (one INSERT ... SELECT ... GROUP BY over all rows), and
//   - the floor: one INSERT ... SELECT ... GROUP BY over exactly the new hour's rows, picking
//     numeric values with a regex on the text (the issue's reference), and the same floor with
//     jsonb_typeof (the extraction the job uses).
// Wall time, and raw rows read (pg_stat_user_tables: seq_tup_read + idx_tup_fetch over every
// partition, flushed by closing the measuring sessions).
import type pg from "pg";
import { makeConfig, runPartitionManager, runRollup } from "../test/support/jobs.ts";
import {
  type BenchResult,
  closeClient,
  createMigratedDatabase,
  markdownTable,
  ms,
  nowMs,
  openClient,
  openKysely,
  ratio,
  runAloneIfMain,
  sleep,
  withServer,
} from "./support.ts";

const HISTORY_ROWS = Number(process.env.ROLLUP_BENCH_HISTORY_ROWS ?? 3_000_000);
const NEW_ROWS = Number(process.env.ROLLUP_BENCH_NEW_ROWS ?? 200_000);
const DEVICES = 500;
const NEW_HOUR = "2026-11-30T23:00:00Z";
const BEFORE_NEW_HOUR = "2026-11-30T23:30:00Z"; // first run: hours before 23:00 final
const AFTER_NEW_HOUR = "2026-12-01T00:30:00Z"; // incremental run: 23:00 has become final
const POLICY = {
  table: "public.telemetry_points",
  timeColumn: "ts",
  rollup: { batchPauseMs: 0, backfillBatchHours: 24 * 7, timeBudgetMs: 3_600_000 },
};

const METRICS_SQL = `jsonb_build_object('temp', (g % 400) / 10.0, 'hum', g % 100, 'volt', 3 + (g % 7) / 10.0,
                                       'fw', 'v' || (g % 3), 'ok', (g % 2 = 0))`;

async function rowsRead(url: string): Promise<number> {
  await sleep(300); // let exiting backends flush their statistics
  const c = await openClient(url, "bench-stats");
  try {
    const r = await c.query(`
      SELECT coalesce(sum(coalesce(s.seq_tup_read, 0) + coalesce(s.idx_tup_fetch, 0)), 0)::bigint AS n
        FROM pg_stat_user_tables s
       WHERE s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'public.telemetry_points'::regclass)`);
    return Number(r.rows[0].n);
  } finally {
    await closeClient(c);
  }
}

/** Runs `work` on its own session, closed afterwards so its statistics are flushed. */
async function measured(url: string, work: (c: pg.Client) => Promise<unknown>) {
  const before = await rowsRead(url);
  const c = await openClient(url, "bench-measured");
  const t0 = nowMs();
  try {
    await work(c);
  } finally {
    await closeClient(c);
  }
  const wallMs = nowMs() - t0;
  return { wallMs, rows: (await rowsRead(url)) - before };
}

const AGG_TYPED = (where: string) => `
  SELECT p.device_id, m.key, date_trunc('hour', p.ts, 'UTC') AS h, count(*), sum(m.value), min(m.value),
         max(m.value), avg(m.value), now()
    FROM public.telemetry_points p CROSS JOIN LATERAL telemetry_jobs.numeric_metrics(p.metrics) m
   WHERE ${where} GROUP BY 1, 2, 3`;
const AGG_REGEX = (where: string) => `
  SELECT p.device_id, e.key, date_trunc('hour', p.ts, 'UTC') AS h, count(*), sum(e.value::float8),
         min(e.value::float8), max(e.value::float8), avg(e.value::float8), now()
    FROM public.telemetry_points p CROSS JOIN LATERAL jsonb_each_text(p.metrics) e
   WHERE ${where} AND e.value ~ '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$' GROUP BY 1, 2, 3`;

export async function runRollupBench(): Promise<BenchResult> {
  const label = "rollup";
  return await withServer(label, async (server) => {
    const url = await createMigratedDatabase(server, "bench_rollup");
    const db = openKysely(url, "rollup-hourly");
    const setup = await openClient(url, "bench-setup", { maintenance_work_mem: "256MB" });
    try {
      const pm = await runPartitionManager(
        db,
        makeConfig(
          url,
          [
            { table: "public.telemetry_points", timeColumn: "ts", premake: 12 },
            { table: "public.telemetry_rollups_hourly", timeColumn: "bucket_ts", premake: 12 },
          ],
          {
            now: "2025-12-01T00:00:00Z",
          },
        ),
      );
      if (pm.exitCode !== 0) throw new Error("partition-manager failed");
      // Autovacuum would analyze the new rows in the middle of a measurement (its reads count as
      // rows read); the benchmark runs ANALYZE itself at fixed points instead.
      await setup.query("ALTER SYSTEM SET autovacuum = off");
      await setup.query("SELECT pg_reload_conf()");
      await setup.query(
        `INSERT INTO public.devices (id) SELECT 'dev' || g FROM generate_series(1, ${DEVICES}) g`,
      );
      const t0 = nowMs();
      const chunk = 500_000;
      for (let done = 0; done < HISTORY_ROWS; done += chunk) {
        const n = Math.min(chunk, HISTORY_ROWS - done);
        // spread over 2025-12-01 .. 2026-11-30T23:00 (12 months), every device
        await setup.query(`
          INSERT INTO public.telemetry_points (device_id, ts, metrics)
          SELECT 'dev' || (g % ${DEVICES} + 1),
                 '2025-12-01'::timestamptz + (g::float8 / ${HISTORY_ROWS}) * (timestamptz '${NEW_HOUR}' - '2025-12-01'),
                 ${METRICS_SQL}
            FROM generate_series(${done + 1}, ${done + n}) g`);
        console.log(`[${label}] history: ${done + n} / ${HISTORY_ROWS} rows`);
      }
      await setup.query("VACUUM ANALYZE public.telemetry_points");
      const loadMs = nowMs() - t0;

      // The job's first run: the whole history, rebuilt in batches (also the "everything" of ours).
      await db.destroy();
      const firstRun = await measured(url, async () => {
        const db1 = openKysely(url, "rollup-hourly");
        try {
          const r = await runRollup(db1, makeConfig(url, [POLICY], { now: BEFORE_NEW_HOUR }));
          if (r.exitCode !== 0) throw new Error(`first rollup run failed: ${JSON.stringify(r.summary)}`);
        } finally {
          await db1.destroy();
        }
      });

      // The new hour: NEW_ROWS rows between 23:00 and 24:00.
      await setup.query(`
        INSERT INTO public.telemetry_points (device_id, ts, metrics)
        SELECT 'dev' || (g % ${DEVICES} + 1), timestamptz '${NEW_HOUR}' + (g::float8 / ${NEW_ROWS}) * interval '1 hour',
               ${METRICS_SQL}
          FROM generate_series(1, ${NEW_ROWS}) g`);
      await setup.query("ANALYZE public.telemetry_points");
      // The first statement to read freshly inserted rows sets their hint bits (dirtying every page,
      // and with data checksums writing it whole to WAL): done here, by none of the measured ones,
      // or the one measured first pays for all. By the time an hour is final the application's
      // readers and autovacuum have usually read it too.
      await setup.query(`SELECT count(*) FROM public.telemetry_points
                          WHERE ts >= '${NEW_HOUR}' AND ts < timestamptz '${NEW_HOUR}' + interval '1 hour'`);
      const newHour = `p.ts >= '${NEW_HOUR}' AND p.ts < timestamptz '${NEW_HOUR}' + interval '1 hour'`;
      await setup.query(`
        CREATE TABLE bench_floor (LIKE public.telemetry_rollups_hourly);
        CREATE TABLE bench_naive (LIKE public.telemetry_rollups_hourly INCLUDING INDEXES);`);

      // A session's statistics are flushed some seconds after it goes idle: end the set-up
      // session now, or its ANALYZE and INSERT reads would land in the next measurement.
      await closeClient(setup);
      await sleep(1_000);
      let incrementalSummary: unknown;
      const incremental = await measured(url, async () => {
        const db2 = openKysely(url, "rollup-hourly");
        try {
          const r = await runRollup(db2, makeConfig(url, [POLICY], { now: AFTER_NEW_HOUR }));
          if (r.exitCode !== 0) throw new Error("incremental run failed");
          incrementalSummary = r.summary.health["public.telemetry_points"];
        } finally {
          await db2.destroy(); // closes its sessions: their statistics are flushed
        }
      });
      const floorRegex = await measured(url, (c) => c.query(`INSERT INTO bench_floor ${AGG_REGEX(newHour)}`));
      await measured(url, (c) => c.query("TRUNCATE bench_floor"));
      const floorTyped = await measured(url, (c) => c.query(`INSERT INTO bench_floor ${AGG_TYPED(newHour)}`));
      const last168 = await measured(url, async (c) => {
        await c.query("BEGIN");
        await c.query(
          `DELETE FROM bench_naive WHERE bucket_ts >= timestamptz '${AFTER_NEW_HOUR}' - interval '168 hours'`,
        );
        await c.query(
          `INSERT INTO bench_naive ${AGG_TYPED(`p.ts >= date_trunc('hour', timestamptz '${AFTER_NEW_HOUR}', 'UTC') - interval '168 hours' AND p.ts < date_trunc('hour', timestamptz '${AFTER_NEW_HOUR}', 'UTC')`)}`,
        );
        await c.query("COMMIT");
      });
      const everything = await measured(url, async (c) => {
        await c.query("BEGIN");
        await c.query("TRUNCATE bench_naive");
        await c.query(
          `INSERT INTO bench_naive ${AGG_TYPED(`p.ts < date_trunc('hour', timestamptz '${AFTER_NEW_HOUR}', 'UTC')`)}`,
        );
        await c.query("COMMIT");
      });
      // The job's result equals the one-statement recompute (same rows, same extraction).
      const check = await openClient(url, "bench-check");
      const diff = await check.query(`
        SELECT count(*)::int AS n FROM bench_naive b FULL JOIN public.telemetry_rollups_hourly r
            ON r.device_id = b.device_id AND r.metric_key = b.metric_key AND r.bucket_ts = b.bucket_ts
         WHERE r.sample_count IS DISTINCT FROM b.sample_count OR r.min IS DISTINCT FROM b.min
            OR r.max IS DISTINCT FROM b.max OR abs(r.sum - b.sum) > 1e-6 * greatest(1, abs(b.sum))`);
      await closeClient(check);

      const rps = (rows: number, wall: number) =>
        `${Math.round(rows / (wall / 1000)).toLocaleString("en-US")} rows/s`;
      // Rows read per new row: the incremental run's target is at most 1.05 (it reads the newly
      // final hour and new rows elsewhere, whatever the history and the current partition hold).
      const line = (name: string, m: { wallMs: number; rows: number }, base: { wallMs: number }) => [
        name,
        ms(m.wallMs),
        m.rows.toLocaleString("en-US"),
        (m.rows / NEW_ROWS).toFixed(2),
        ratio(m.wallMs, base.wallMs),
        ratio(m.wallMs, floorTyped.wallMs),
      ];
      const rows = [
        line(
          "floor: one INSERT ... GROUP BY over the new hour, regex on text (baseline)",
          floorRegex,
          floorRegex,
        ),
        line("floor, jsonb_typeof extraction", floorTyped, floorRegex),
        line("**incremental run (rollup-hourly)**", incremental, floorRegex),
        line("recompute the last 168 hours (one statement)", last168, floorRegex),
        line("recompute everything (one statement)", everything, floorRegex),
        line("first run: rebuild of all history in batches (rollup-hourly)", firstRun, floorRegex),
      ];
      const report = [
        "## 3. rollup-hourly: incremental vs. recompute windows",
        "",
        `${HISTORY_ROWS.toLocaleString("en-US")} rows of history over 12 months (${DEVICES} devices, 3 numeric keys + a string + a boolean per row; loaded in ${ms(loadMs)}), then one new hour of ${NEW_ROWS.toLocaleString("en-US")} rows.`,
        "Rows read: seq_tup_read + idx_tup_fetch over every partition of telemetry_points; per new row: divided by the new hour's rows.",
        "",
        markdownTable(
          [
            "operation",
            "wall",
            "raw rows read",
            "per new row",
            "ratio vs floor (wall)",
            "vs jsonb_typeof floor",
          ],
          rows,
        ),
        "",
        `Throughput over the new hour: incremental ${rps(NEW_ROWS, incremental.wallMs)}, floor (regex) ${rps(NEW_ROWS, floorRegex.wallMs)}, floor (jsonb_typeof) ${rps(NEW_ROWS, floorTyped.wallMs)}.`,
        `Incremental run health: ${JSON.stringify(incrementalSummary)}.`,
        `Buckets where the job's table differs from the one-statement recompute of everything: ${diff.rows[0].n}.`,
      ].join("\n");
      return {
        name: label,
        report,
        summary: [
          ["rollup", "floor (regex), new hour", ms(floorRegex.wallMs), "1.00x"],
          [
            "rollup",
            "floor (jsonb_typeof), new hour",
            ms(floorTyped.wallMs),
            ratio(floorTyped.wallMs, floorRegex.wallMs),
          ],
          ["rollup", "incremental run", ms(incremental.wallMs), ratio(incremental.wallMs, floorRegex.wallMs)],
          [
            "rollup",
            "incremental run vs floor (jsonb_typeof)",
            ms(incremental.wallMs),
            ratio(incremental.wallMs, floorTyped.wallMs),
          ],
          [
            "rollup",
            "incremental run, raw rows read / new rows",
            `${incremental.rows.toLocaleString("en-US")} / ${NEW_ROWS.toLocaleString("en-US")}`,
            `${(incremental.rows / NEW_ROWS).toFixed(2)}x`,
          ],
          ["rollup", "recompute 168 h", ms(last168.wallMs), ratio(last168.wallMs, floorRegex.wallMs)],
          [
            "rollup",
            "recompute everything",
            ms(everything.wallMs),
            ratio(everything.wallMs, floorRegex.wallMs),
          ],
        ],
        problems: diff.rows[0].n > 0 ? [`rollup: ${diff.rows[0].n} buckets differ from the recompute`] : [],
      };
    } finally {
      await closeClient(setup);
      await db.destroy().catch(() => {});
    }
  });
}

runAloneIfMain(import.meta.url, () => runRollupBench());
