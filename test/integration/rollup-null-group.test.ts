// A raw row whose group column (policy.rollup.groupBy) is NULL cannot be a bucket of the
// (group, metric key, hour) key: rollup-hourly skips it, counts it (a WARN and the table's health in
// the run summary), and goes on. It used to insert NULL into the NOT NULL group column of the
// target, so every run failed and final_before never moved again. The real-time read leaves the
// same rows out.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { readHourlySeries } from "../../shared/rollups/read.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, makeConfig, runCli, runRollup } from "../support/jobs.ts";
import {
  bucketDiff,
  expectedBuckets,
  hourOf,
  insertRows,
  type RawRow,
  storedBuckets,
} from "../support/rollup-oracle.ts";

let t: TestDatabase;
const TABLE = "public.telemetry_points";
const POLICY = { table: TABLE, timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const at = (iso: string) => new Date(iso);

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) VALUES ('d1'), ('d2')`);
  // Sources in the field do have nullable group columns; the greenfield table does not.
  await t.pool.query(`ALTER TABLE ${TABLE} ALTER COLUMN device_id DROP NOT NULL`);
});
afterAll(async () => {
  await t.drop();
});

async function reset() {
  await t.pool.query(`TRUNCATE ${TABLE}, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
}

/** Rows with a NULL device_id (kept out of the oracle: they belong to no bucket). */
async function insertNullGroupRows(times: readonly string[], metrics: unknown = { temp: 1000 }) {
  await t.pool.query(
    `INSERT INTO ${TABLE} (device_id, ts, metrics) SELECT NULL, ts, $2::jsonb FROM unnest($1::timestamptz[]) AS ts`,
    [times, JSON.stringify(metrics)],
  );
}

async function finalBefore(): Promise<string | undefined> {
  const r = await t.pool.query(
    "SELECT final_before, backfill_next, backfill_to FROM telemetry_jobs.rollup_watermarks",
  );
  return r.rows[0] && new Date(r.rows[0].final_before).toISOString();
}

async function pendingRebuild(): Promise<boolean> {
  const r = await t.pool.query(
    "SELECT count(*)::int AS n FROM telemetry_jobs.rollup_watermarks WHERE backfill_next < backfill_to",
  );
  return r.rows[0].n > 0;
}

const cliEnv = () => ({
  DATABASE_URL: t.url,
  TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POLICY] }),
});

function summaryOf(lines: LogRecord[]) {
  return lines.find((l) => l.event === "run_summary") as LogRecord | undefined;
}

function failureText(run: { code: number | null; lines: LogRecord[]; stderr: string }) {
  return `exit ${run.code}: ${JSON.stringify(run.lines.filter((l) => l.severity === "ERROR"))}\n${run.stderr}`;
}

/** What a run left behind, compared as one value so a failure shows all of it. */
async function progress(
  run: { code: number | null; lines: LogRecord[] },
  rows: readonly RawRow[],
  finalHour: Date,
) {
  const warning = run.lines.find((l) => l.severity === "WARNING" && /NULL/.test(l.message));
  return {
    exit: run.code,
    finalBefore: await finalBefore(),
    rebuildPending: await pendingRebuild(),
    wrongBuckets: bucketDiff(expectedBuckets(rows, finalHour), await storedBuckets(t.pool)),
    nullGroupRowsSkipped: summaryOf(run.lines)?.health?.[TABLE]?.nullGroupRowsSkipped,
    warning: warning && { rows: warning.rows },
  };
}

describe("rollup-hourly with NULL group values", () => {
  beforeEach(reset);

  it("skips and counts NULL-group rows; every other bucket equals a GROUP BY; final_before keeps moving", async () => {
    // Hours 00..02 final at 03:30; one NULL row per hour, one in the open hour 03.
    const rows: RawRow[] = [];
    for (const h of ["00", "01", "02"])
      for (const [i, device] of ["d1", "d2", "d1"].entries())
        rows.push({ device, ts: at(`2026-06-01T${h}:${10 + i}:00Z`), metrics: { temp: i + 1, hum: 50 } });
    rows.push({ device: "d1", ts: at("2026-06-01T03:05:00Z"), metrics: { temp: 7 } });
    await insertRows(t.pool, rows);
    await insertNullGroupRows([
      "2026-06-01T00:30:00Z",
      "2026-06-01T01:30:00Z",
      "2026-06-01T02:30:00Z",
      "2026-06-01T03:30:00Z",
    ]);

    // First run: rebuilds 00..03.
    const first = await runCli(["rollup-hourly", "--now", "2026-06-01T03:30:00Z"], cliEnv());
    const afterFirst = await progress(first, rows, at("2026-06-01T03:00:00Z"));

    // Hour 03 becomes final (recomputed whole: two NULL rows there now), and late rows arrive in
    // hour 01 (recomputed bucket by bucket: one of them has a NULL group).
    const more: RawRow[] = [
      { device: "d1", ts: at("2026-06-01T03:40:00Z"), metrics: { temp: 8 } },
      { device: "d2", ts: at("2026-06-01T01:45:00Z"), metrics: { temp: 9 } },
    ];
    await insertRows(t.pool, more);
    rows.push(...more);
    await insertNullGroupRows(["2026-06-01T03:50:00Z", "2026-06-01T01:50:00Z"]);
    const second = await runCli(["rollup-hourly", "--now", "2026-06-01T04:30:00Z"], cliEnv());
    const afterSecond = await progress(second, rows, at("2026-06-01T04:00:00Z"));

    const ok = (finalBefore: string) => ({
      exit: 0,
      finalBefore,
      rebuildPending: false,
      wrongBuckets: [],
      nullGroupRowsSkipped: 3,
      warning: { rows: 3 },
    });
    expect([afterFirst, afterSecond], `${failureText(first)}\n${failureText(second)}`).toEqual([
      ok("2026-06-01T03:00:00.000Z"),
      ok("2026-06-01T04:00:00.000Z"),
    ]);
    const nullRollups = await t.pool.query(
      "SELECT count(*)::int AS n FROM public.telemetry_rollups_hourly WHERE device_id IS NULL",
    );
    expect(nullRollups.rows[0].n).toBe(0);

    // The run is recorded with the count.
    const recorded = await t.pool.query(
      `SELECT summary->'health'->'${TABLE}'->>'nullGroupRowsSkipped' AS n
         FROM telemetry_jobs.job_runs WHERE job = 'rollup-hourly' ORDER BY id`,
    );
    expect(recorded.rows.map((r) => r.n)).toEqual(["3", "3"]);

    // The real-time read leaves the same rows out: final hours, late rows and the open hour 04.
    const open: RawRow[] = [{ device: "d1", ts: at("2026-06-01T04:10:00Z"), metrics: { temp: 11 } }];
    await insertRows(t.pool, open);
    rows.push(...open);
    await insertNullGroupRows(["2026-06-01T04:20:00Z", "2026-06-01T02:40:00Z"]);
    const model = expectedBuckets(rows, at("2026-06-02T00:00:00Z"));
    for (const device of ["d1", "d2"]) {
      const series = await readHourlySeries(t.db, {
        deviceId: device,
        metricKey: "temp",
        from: at("2026-06-01T00:00:00Z"),
        to: at("2026-06-01T05:00:00Z"),
      });
      const want = [...model]
        .filter(([k]) => k.startsWith(`${device}|temp|`))
        .map(([k, b]) => [k.split("|")[2], b.count, b.sum])
        .sort();
      expect(series.map((p) => [p.bucketTs.toISOString(), p.sampleCount, p.sum])).toEqual(want);
    }
    const forNull = await t.pool.query(
      `SELECT count(*)::int AS n FROM public.telemetry_hourly_series(NULL, 'temp', '2026-06-01T00:00Z', '2026-06-01T05:00Z')`,
    );
    expect(forNull.rows[0].n).toBe(0);
  });

  it("a sharded run: NULL-group rows are counted once, by task 0; together the tasks write the GROUP BY", async () => {
    const rows: RawRow[] = ["d1", "d2"].flatMap((device, i) =>
      ["00", "01"].map((h) => ({ device, ts: at(`2026-06-01T${h}:1${i}:00Z`), metrics: { temp: i } })),
    );
    await insertRows(t.pool, rows);
    await insertNullGroupRows(["2026-06-01T00:20:00Z", "2026-06-01T01:20:00Z"]);
    const config = makeConfig(t.url, [POLICY], { now: "2026-06-01T02:10:00Z" });
    const skipped: unknown[] = [];
    for (const index of [0, 1]) {
      const run = await runRollup(t.db, config, { shard: { count: 2, index } });
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
      skipped.push((run.summary.health[TABLE] as Record<string, unknown>).nullGroupRowsSkipped);
    }
    expect(skipped).toEqual([2, 0]);
    expect(
      bucketDiff(expectedBuckets(rows, hourOf(at("2026-06-01T02:10:00Z"))), await storedBuckets(t.pool)),
    ).toEqual([]);
  });

  it("a NOT NULL group column: nothing is counted and the health record is unchanged", async () => {
    const rows: RawRow[] = [{ device: "d1", ts: at("2026-06-01T00:10:00Z"), metrics: { temp: 1 } }];
    await insertRows(t.pool, rows);
    await t.pool.query(`ALTER TABLE ${TABLE} ALTER COLUMN device_id SET NOT NULL`);
    try {
      const run = await runRollup(t.db, makeConfig(t.url, [POLICY], { now: "2026-06-01T01:10:00Z" }));
      expect(run.exitCode).toBe(0);
      expect(run.summary.health[TABLE]).not.toHaveProperty("nullGroupRowsSkipped");
      expect(run.logs.filter((l) => /NULL/.test(l.message))).toEqual([]);
      expect(
        bucketDiff(expectedBuckets(rows, at("2026-06-01T01:00:00Z")), await storedBuckets(t.pool)),
      ).toEqual([]);
    } finally {
      await t.pool.query(`ALTER TABLE ${TABLE} ALTER COLUMN device_id DROP NOT NULL`);
    }
  });
});
