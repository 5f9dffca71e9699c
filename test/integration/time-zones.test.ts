// Every job must give the same result whatever the process's TZ is. Columns of type `timestamp`
// (without time zone) hold UTC wall-clock times; a Date sent as a parameter must therefore be
// written in UTC, or every comparison moves by the local offset (with TZ=Asia/Tokyo, retention
// deleted rows 9 hours newer than its cutoff; with TZ=Asia/Kolkata, a day of one-minute rows
// became 19 buckets). The CLI runs below are real child processes with TZ set; the property test
// changes TZ in-process (Node applies a new process.env.TZ at once) over random IANA zones and
// compares with an oracle computed in UTC.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runRetention, runRollup } from "../support/jobs.ts";
import { bucketDiff, expectedBuckets, hourOf, type RawRow, storedBuckets } from "../support/rollup-oracle.ts";

let t: TestDatabase;
const DAY = 86_400_000;
const HOUR = 3_600_000;
const MINUTE = 60_000;

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.tz_plain (id int NOT NULL, ts timestamp NOT NULL);
    CREATE TABLE public.tz_default (id int NOT NULL, ts timestamp NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.tz_default_p202603 PARTITION OF public.tz_default
      FOR VALUES FROM ('2026-03-01 00:00:00') TO ('2026-04-01 00:00:00');
    CREATE TABLE public.tz_default_default PARTITION OF public.tz_default DEFAULT;
    CREATE TABLE public.tz_straddle (id int NOT NULL, ts timestamp NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.tz_straddle_mid PARTITION OF public.tz_straddle
      FOR VALUES FROM ('2026-01-15 00:00:00') TO ('2026-02-15 00:00:00');
    CREATE TABLE public.tz_prop_default (id int NOT NULL, ts timestamp NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.tz_prop_default_p203001 PARTITION OF public.tz_prop_default
      FOR VALUES FROM ('2030-01-01 00:00:00') TO ('2030-02-01 00:00:00');
    CREATE TABLE public.tz_prop_default_default PARTITION OF public.tz_prop_default DEFAULT;
    CREATE TABLE public.tz_points (
      device_id text NOT NULL,
      ts timestamp NOT NULL,
      metrics jsonb NOT NULL,
      ingest_xid xid8 DEFAULT pg_current_xact_id()
    );
    CREATE INDEX ON public.tz_points (ingest_xid, ts);`);
});
afterAll(async () => {
  await t.drop();
});

const RETENTION = { keep: "28 days", batchPauseMs: 0 };
const POLICIES = [
  { table: "public.tz_plain", timeColumn: "ts", partitioned: false, retention: RETENTION },
  { table: "public.tz_default", timeColumn: "ts", retention: RETENTION },
  { table: "public.tz_straddle", timeColumn: "ts", retention: { ...RETENTION, exactCutoff: true } },
  { table: "public.tz_points", timeColumn: "ts", partitioned: false, rollup: { batchPauseMs: 0 } },
];

/** A UTC instant as a `timestamp` literal (the wall-clock time in UTC, microseconds kept as given). */
const naive = (d: Date) => d.toISOString().replace("T", " ").replace("Z", "");

/** The rows of a table as UTC wall-clock text, read without any client-side date parsing. */
async function timesOf(table: string): Promise<string[]> {
  const r = await t.pool.query(
    `SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US') AS ts FROM ${table} ORDER BY ts, id`,
  );
  return r.rows.map((row) => row.ts);
}

async function insertTimes(table: string, times: readonly string[]): Promise<void> {
  await t.pool.query(
    `INSERT INTO ${table} (id, ts) SELECT i, ts FROM unnest($1::timestamp[]) WITH ORDINALITY AS x (ts, i)`,
    [times],
  );
}

async function resetRetentionTables(): Promise<void> {
  await t.pool.query(
    "TRUNCATE public.tz_plain, public.tz_default, public.tz_straddle, public.tz_prop_default",
  );
}

async function resetRollup(): Promise<void> {
  await t.pool.query(`TRUNCATE public.tz_points, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
}

async function insertPoints(rows: readonly RawRow[]): Promise<void> {
  await t.pool.query(
    `INSERT INTO public.tz_points (device_id, ts, metrics)
     SELECT * FROM unnest($1::text[], $2::timestamp[], $3::jsonb[])`,
    [rows.map((r) => r.device), rows.map((r) => naive(r.ts)), rows.map((r) => JSON.stringify(r.metrics))],
  );
}

/** Buckets as (hour, samples), sorted: what the tests compare. */
async function bucketCounts(): Promise<[string, number][]> {
  const r = await t.pool.query(
    `SELECT to_char(bucket_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24') AS h, sample_count::int AS n
       FROM public.telemetry_rollups_hourly ORDER BY bucket_ts`,
  );
  return r.rows.map((row) => [row.h, row.n]);
}

function hoursOf(day: string, samples: number, count = 24): [string, number][] {
  return Array.from({ length: count }, (_, h) => [`${day}T${String(h).padStart(2, "0")}`, samples]);
}

const ZONES = ["Asia/Tokyo", "Asia/Kolkata", "America/St_Johns"];

describe("timestamp without time zone: the CLI gives the same result whatever TZ is", () => {
  // now 2026-03-01T00:00Z, keep 28 days: the cutoff is 2026-02-01 00:00:00 (UTC).
  const NOW = "2026-03-01T00:00:00Z";
  const CUTOFF = "2026-02-01 00:00:00.000000";
  // Every 15 minutes from Jan 31 to Feb 2 (UTC), and the last microsecond before the cutoff.
  const GRID = [
    ...Array.from({ length: 3 * 96 }, (_, i) =>
      naive(new Date(Date.parse("2026-01-31T00:00:00Z") + i * 15 * MINUTE)),
    ),
    "2026-01-31 23:59:59.999999",
  ];
  const expected = (times: readonly string[]) =>
    times
      .map((s) => `${s.slice(0, 19)}.${(s.split(".")[1] ?? "").padEnd(6, "0")}`)
      .filter((s) => s >= CUTOFF)
      .sort();

  for (const zone of ZONES) {
    it(`retention with TZ=${zone}: exactly the rows before the cutoff are deleted (plain table, DEFAULT, straddling child)`, async () => {
      await resetRetentionTables();
      await insertTimes("public.tz_plain", GRID);
      await insertTimes("public.tz_default", [...GRID, "2026-03-10 12:00:00"]);
      // The straddling child holds Jan 15 .. Feb 15: the grid fits in it.
      await insertTimes("public.tz_straddle", GRID);
      const defaultRows = await t.pool.query("SELECT count(*)::int AS n FROM ONLY public.tz_default_default");
      expect(defaultRows.rows[0].n).toBe(GRID.length);

      const run = await runCli(["retention", "--now", NOW], {
        TZ: zone,
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: POLICIES }),
      });
      expect(
        run.code,
        `${run.stderr}\n${JSON.stringify(run.lines.filter((l) => l.severity === "ERROR"))}`,
      ).toBe(0);
      expect(await timesOf("public.tz_plain")).toEqual(expected(GRID));
      expect(await timesOf("public.tz_default")).toEqual(expected([...GRID, "2026-03-10 12:00:00"]));
      expect(await timesOf("public.tz_straddle")).toEqual(expected(GRID));
      // One batched delete per table: the plain table, the DEFAULT partition, the straddling child.
      const summary = run.lines.find((l) => l.event === "run_summary");
      expect(summary?.actions).toEqual({ delete_rows: 3 });
    });
  }

  for (const zone of ZONES) {
    it(`rollup-hourly with TZ=${zone}: a day of one-minute rows is 24 buckets of 60; the next hour and a late row follow`, async () => {
      await resetRollup();
      const day = Date.parse("2026-06-01T00:00:00Z");
      await insertPoints(
        Array.from({ length: 24 * 60 }, (_, i) => ({
          device: "d1",
          ts: new Date(day + i * MINUTE),
          metrics: { v: 1 },
        })),
      );
      const env = {
        TZ: zone,
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: POLICIES }),
      };
      const first = await runCli(["rollup-hourly", "--now", "2026-06-02T00:30:00Z"], env);
      expect(first.code, first.stderr).toBe(0);
      expect(await bucketCounts()).toEqual(hoursOf("2026-06-01", 60));

      // The next hour becomes final (recomputed whole) and a late row touches 10:00 (recomputed
      // bucket by bucket): both paths compare Date parameters with the column.
      await insertPoints([
        { device: "d1", ts: new Date("2026-06-01T10:15:30.250Z"), metrics: { v: 1 } },
        ...Array.from({ length: 60 }, (_, i) => ({
          device: "d1",
          ts: new Date(day + DAY + i * MINUTE),
          metrics: { v: 1 },
        })),
      ]);
      const second = await runCli(["rollup-hourly", "--now", "2026-06-02T01:30:00Z"], env);
      expect(second.code, second.stderr).toBe(0);
      const want = hoursOf("2026-06-01", 60);
      want[10] = ["2026-06-01T10", 61];
      expect(await bucketCounts()).toEqual([...want, ["2026-06-02T00", 60]]);
    });
  }
});

/** The zone's UTC offset at an instant, in minutes east of UTC, from Intl (not from process.env.TZ). */
function offsetMinutes(zone: string, at: Date): number {
  const name = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" })
    .formatToParts(at)
    .find((p) => p.type === "timeZoneName")!.value;
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name);
  if (!m) throw new Error(`unexpected offset ${name} for ${zone}`);
  if (!m[1]) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

describe("property: random IANA time zones, in-process", () => {
  // Half-hour and 45-minute offsets, DST zones on both hemispheres, far east and west.
  const INTERESTING = [
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Eucla",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Marquesas",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Australia/Adelaide",
    "America/Santiago",
  ];
  const zone = fc.oneof(
    fc.constantFrom(...INTERESTING),
    fc.constantFrom(...Intl.supportedValuesOf("timeZone")),
  );
  // 2025-2027, so DST transitions are included.
  const instant = fc
    .integer({
      min: Date.parse("2025-01-01T00:00:00Z") / MINUTE,
      max: Date.parse("2027-12-31T00:00:00Z") / MINUTE,
    })
    .map((m) => new Date(m * MINUTE));

  it("setting process.env.TZ changes the local offset Node uses", () => {
    const saved = process.env.TZ;
    try {
      const at = new Date("2026-01-15T12:00:00Z");
      for (const z of ["Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "UTC"]) {
        process.env.TZ = z;
        expect(0 - at.getTimezoneOffset(), z).toBe(offsetMinutes(z, at));
      }
      expect(offsetMinutes("Asia/Kathmandu", at)).toBe(345);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it("retention and rollup-hourly equal a UTC oracle in every zone", async () => {
    const saved = process.env.TZ;
    try {
      await fc.assert(
        fc.asyncProperty(
          zone,
          instant,
          // rows within +-2 days of the cutoff, millisecond precision
          fc.array(fc.integer({ min: -2 * DAY, max: 2 * DAY }), { minLength: 1, maxLength: 40 }),
          // rollup rows within 30 hours before now, and late rows for a second run
          fc.array(fc.integer({ min: -30 * HOUR, max: 0 }), { minLength: 1, maxLength: 60 }),
          fc.array(fc.integer({ min: -30 * HOUR, max: HOUR }), { maxLength: 10 }),
          fc.integer({ min: 0, max: 3 * HOUR }),
          async (tz, now, retentionOffsets, rollupOffsets, lateOffsets, advance) => {
            process.env.TZ = tz;
            expect(0 - now.getTimezoneOffset()).toBe(offsetMinutes(tz, now));

            // Retention: keep 28 days; rows at or after the cutoff stay, the others go.
            await resetRetentionTables();
            const cutoff = new Date(now.getTime() - 28 * DAY);
            const times = retentionOffsets.map((o) => new Date(cutoff.getTime() + o));
            const tables = [
              { table: "public.tz_plain", timeColumn: "ts", partitioned: false, retention: RETENTION },
              { table: "public.tz_prop_default", timeColumn: "ts", retention: RETENTION },
            ];
            // tz_prop_default's one child is January 2030: every row here lands in DEFAULT.
            await insertTimes("public.tz_plain", times.map(naive));
            await insertTimes("public.tz_prop_default", times.map(naive));
            const retention = await runRetention(t.db, makeConfig(t.url, tables, { now }));
            expect(retention.exitCode).toBe(0);
            const kept = (list: Date[]) =>
              list
                .filter((d) => d >= cutoff)
                .map((d) => `${naive(d)}000`)
                .sort();
            expect(await timesOf("public.tz_plain")).toEqual(kept(times));
            expect(await timesOf("public.tz_prop_default")).toEqual(kept(times));

            // rollup-hourly: a first run (rebuild), then a run with late rows and a newly final hour.
            await resetRollup();
            const rows: RawRow[] = rollupOffsets.map((o, i) => ({
              device: `d${i % 3}`,
              ts: new Date(now.getTime() + o),
              metrics: { v: (i % 7) - 3 },
            }));
            await insertPoints(rows);
            const policy = [
              {
                table: "public.tz_points",
                timeColumn: "ts",
                partitioned: false,
                rollup: { batchPauseMs: 0 },
              },
            ];
            const first = await runRollup(t.db, makeConfig(t.url, policy, { now }));
            expect(first.exitCode).toBe(0);
            expect(bucketDiff(expectedBuckets(rows, hourOf(now)), await storedBuckets(t.pool))).toEqual([]);

            const later = new Date(now.getTime() + advance);
            const late: RawRow[] = lateOffsets.map((o, i) => ({
              device: `d${i % 3}`,
              ts: new Date(now.getTime() + o),
              metrics: { v: i },
            }));
            if (late.length > 0) await insertPoints(late);
            rows.push(...late);
            const second = await runRollup(t.db, makeConfig(t.url, policy, { now: later }));
            expect(second.exitCode).toBe(0);
            expect(bucketDiff(expectedBuckets(rows, hourOf(later)), await storedBuckets(t.pool))).toEqual([]);
          },
        ),
        { numRuns: 40, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
      );
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});
