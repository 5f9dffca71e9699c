// Upgrade from release 0007, whose migrations made the starter telemetry tables in public as part of
// the product's own history (0002, 0004, 0007), to the layout where `migrate up` owns only
// telemetry_jobs and the starter schema has a history of its own. A database built and run by that
// release (partitions, rollups with change tracking, retention drops) is upgraded with `migrate up`
// as a deploy runs it: no telemetry row changes, nothing in public changes (no DDL at all outside
// telemetry_jobs), the rollup state is kept, the starter schema is recorded as installed, and every
// job runs on as before.
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.ts";
import { migrateToLatest, migrationStatus, throwIfFailed } from "../../shared/migrate/migrator.ts";
import { readHourlySeries } from "../../shared/rollups/read.ts";
import { ddlOutside, recordDdl, schemaCatalog } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import {
  type LogRecord,
  makeConfig,
  runCli,
  runPartitionManager,
  runRetention,
  runRollup,
} from "../support/jobs.ts";
import { createRelease0007Migrator, RELEASE_0007_MIGRATIONS } from "../support/release-0007/index.ts";

const POLICIES = [
  {
    table: "public.telemetry_points",
    timeColumn: "ts",
    interval: "daily",
    premake: 3,
    retention: { keep: "5 days", maxDropsPerRun: 10, batchPauseMs: 0 },
    rollup: { batchPauseMs: 0 },
  },
  {
    table: "public.telemetry_rollups_hourly",
    timeColumn: "bucket_ts",
    interval: "monthly",
    premake: 2,
    retention: { keep: "24 months" },
  },
];
const BEFORE = "2026-06-08T00:30:00Z";
const AFTER = "2026-06-11T00:30:00Z";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
});
afterAll(async () => {
  await t.drop();
});

function expectOk(run: { exitCode: number; logs: LogRecord[] }) {
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
}

async function runEveryJob(now: string) {
  const config = makeConfig(t.url, POLICIES, { now });
  expectOk(await runPartitionManager(t.db, config));
  expectOk(await runRollup(t.db, config));
  expectOk(await runRetention(t.db, config));
}

/**
 * Release 0007's jobs made the state the upgrade starts from; this build's jobs play them. They
 * refuse a schema behind them (a configuration error, exit 2: checked here first), so for these runs the history is made
 * to list this build's migrations, and put back as it was afterwards.
 */
async function runEveryJobAsRelease0007(now: string) {
  await expect(runPartitionManager(t.db, makeConfig(t.url, POLICIES, { now }))).rejects.toThrow(
    /bookkeeping schema is behind this build: .*0011_abandoned_runs not applied/,
  );
  const missing = Object.keys(MIGRATIONS).filter((name) => !(name in RELEASE_0007_MIGRATIONS));
  await t.pool.query(
    "INSERT INTO telemetry_jobs.kysely_migration (name, timestamp) SELECT unnest($1::text[]), $2",
    [missing, new Date().toISOString()],
  );
  try {
    await runEveryJob(now);
  } finally {
    await t.pool.query("DELETE FROM telemetry_jobs.kysely_migration WHERE name = ANY($1::text[])", [missing]);
  }
}

/** Every telemetry row, whole (ingest_xid and updated_at included), and the rollup state. */
async function telemetryRows(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const relation of [
    "public.devices",
    "public.telemetry_points",
    "public.telemetry_rollups_hourly",
    "telemetry_jobs.rollup_watermarks",
    "telemetry_jobs.rollup_changes",
    "telemetry_jobs.retention_holds",
  ]) {
    const r = await t.pool.query(`SELECT x::text AS row FROM ${relation} x ORDER BY 1`);
    out[relation] = r.rows.map((row) => row.row);
  }
  return out;
}

/** Rollups of final hours from `from` on, against a GROUP BY over the raw rows. */
async function expectRollupsEqualRaw(from: string, finalBefore: string) {
  const raw = await t.pool.query(
    `SELECT device_id, 'temp' AS metric_key, date_trunc('hour', ts) AS bucket_ts, count(*)::int AS n,
            sum((metrics->>'temp')::float8) AS sum, min((metrics->>'temp')::float8) AS min,
            max((metrics->>'temp')::float8) AS max
       FROM public.telemetry_points WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    [from, finalBefore],
  );
  const rollups = await t.pool.query(
    `SELECT device_id, metric_key, bucket_ts, sample_count::int AS n, sum, min, max
       FROM public.telemetry_rollups_hourly WHERE bucket_ts >= $1 AND bucket_ts < $2 ORDER BY 1, 2, 3`,
    [from, finalBefore],
  );
  expect(raw.rows.length).toBeGreaterThan(0);
  expect(rollups.rows).toEqual(raw.rows);
}

describe("upgrade from release 0007 (starter tables in the product's history)", () => {
  it("migrate up changes no telemetry row and nothing outside telemetry_jobs; the jobs run on", async () => {
    // The database as release 0007 left it, in use.
    throwIfFailed(await createRelease0007Migrator(t.db).migrateToLatest());
    await t.pool.query(`INSERT INTO public.devices (id) VALUES ('d1'), ('d2'), ('d3')`);
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics)
       SELECT d, ts, jsonb_build_object('temp', extract(epoch FROM ts)::bigint % 97)
         FROM unnest(ARRAY['d1', 'd2', 'd3']) AS d,
              generate_series('2026-06-01T00:00:00Z'::timestamptz, '2026-06-07T23:50:00Z', interval '10 minutes') AS ts`,
    );
    await runEveryJobAsRelease0007(BEFORE);
    // Change tracking in use: an update and a delete of rolled-up rows, then a run that consumes
    // one of them and a change record left for the next run.
    await t.pool.query(
      `UPDATE public.telemetry_points SET metrics = '{"temp": 500}' WHERE device_id = 'd1' AND ts = '2026-06-06T10:00:00Z'`,
    );
    await runEveryJobAsRelease0007(BEFORE);
    await t.pool.query(
      `DELETE FROM public.telemetry_points WHERE device_id = 'd2' AND ts = '2026-06-06T11:00:00Z'`,
    );
    const hold = await runCli(
      ["hold", "public.telemetry_points_p20260604", "--until", "2027-01-01T00:00:00Z", "--reason", "audit"],
      { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: POLICIES }) },
    );
    expect(hold.code).toBe(0);
    const pending = await t.pool.query(`SELECT count(*)::int AS n FROM telemetry_jobs.rollup_changes`);
    expect(pending.rows[0].n).toBeGreaterThan(0);

    const rowsBefore = await telemetryRows();
    const publicBefore = await schemaCatalog(t.url, "public");
    expect(publicBefore.some((item) => item.startsWith("trigger "))).toBe(true);
    const ddl = await recordDdl(t.url);

    // The upgrade, as Cloud Build's migrate job runs it.
    const up = await runCli(["migrate", "up"], { DATABASE_URL: t.url });
    expect(up.code, `${JSON.stringify(up.lines, null, 1)}\n${up.stderr}`).toBe(0);
    expect(await telemetryRows()).toEqual(rowsBefore);
    expect(await schemaCatalog(t.url, "public")).toEqual(publicBefore);
    expect(ddlOutside(await ddl.commands(), "telemetry_jobs")).toEqual([]);

    // The history: release 0007's names are all still there, the starter schema is recorded as
    // installed, and asking for it again changes nothing.
    const status = await runCli(["migrate", "status"], { DATABASE_URL: t.url });
    expect(status.code).toBe(0);
    const messages = status.lines.map((l) => l.message);
    for (const name of Object.keys(RELEASE_0007_MIGRATIONS)) expect(messages).toContain(`applied ${name}`);
    expect(messages.filter((m) => m.startsWith("pending"))).toEqual([]);
    expect(messages.filter((m) => /^applied starter_/.test(m)).length).toBeGreaterThan(0);
    const starter = await runCli(["migrate", "up", "--with-starter-schema"], { DATABASE_URL: t.url });
    expect(starter.code).toBe(0);
    expect(await telemetryRows()).toEqual(rowsBefore);
    expect(await schemaCatalog(t.url, "public")).toEqual(publicBefore);
    expect(ddlOutside(await ddl.commands(), "telemetry_jobs")).toEqual([]);

    // Every job again, with new rows, a late row and the pending change record.
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics)
       SELECT d, ts, jsonb_build_object('temp', extract(epoch FROM ts)::bigint % 89)
         FROM unnest(ARRAY['d1', 'd2', 'd3']) AS d,
              generate_series('2026-06-08T00:00:00Z'::timestamptz, '2026-06-10T23:50:00Z', interval '10 minutes') AS ts`,
    );
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('d3', '2026-06-07T05:05:00Z', '{"temp": -3}')`,
    );
    await runEveryJob(AFTER);
    await expectRollupsEqualRaw("2026-06-06T00:00:00Z", "2026-06-11T00:00:00Z");
    const changes = await t.pool.query(`SELECT count(*)::int AS n FROM telemetry_jobs.rollup_changes`);
    expect(changes.rows[0].n).toBe(0);
    // The held partition stays; the others past 5 days are gone; the rollups of every hour stay.
    const children = await t.pool.query(
      `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.telemetry_points'::regclass ORDER BY 1`,
    );
    const names = children.rows.map((r) => r.relname);
    expect(names).toContain("telemetry_points_p20260604");
    expect(names).not.toContain("telemetry_points_p20260603");
    expect(names).not.toContain("telemetry_points_p20260605");
    const rollupHours = await t.pool.query(
      `SELECT count(DISTINCT bucket_ts)::int AS n FROM public.telemetry_rollups_hourly WHERE bucket_ts < '2026-06-11'`,
    );
    expect(rollupHours.rows[0].n).toBe(10 * 24);

    // The real-time read: final hours from the rollups, the open hour from raw rows.
    const series = await readHourlySeries(t.db, {
      deviceId: "d1",
      metricKey: "temp",
      from: new Date("2026-06-10T20:00:00Z"),
      to: new Date("2026-06-11T01:00:00Z"),
    });
    expect(series.map((p) => p.source)).toEqual(["rollup", "rollup", "rollup", "rollup"]);
    const runs = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM telemetry_jobs.job_runs WHERE status <> 'ok'`.execute(t.db);
    expect(runs.rows[0]!.n).toBe(0);
  });

  it("from an older release (0001-0004): the starter read function stays until --with-starter-schema replaces it", async () => {
    const old = await createTestDatabase({ migrated: false });
    try {
      throwIfFailed(await createRelease0007Migrator(old.db).migrateTo("0004_rollups"));
      await old.pool.query(`INSERT INTO public.devices (id) VALUES ('d1')`);
      await old.pool.query(
        `INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('d1', '2026-06-01T10:00:00Z', '{"temp": 1}')`,
      );
      const publicBefore = await schemaCatalog(old.url, "public");
      const up = await runCli(["migrate", "up"], { DATABASE_URL: old.url });
      expect(up.code, up.stderr).toBe(0);
      expect(await schemaCatalog(old.url, "public")).toEqual(publicBefore);
      expect(up.lines.find((l) => l.severity === "WARNING")?.message).toBe(
        "the starter schema is installed but 1 of its migrations are pending (starter_0003_hourly_series): run migrate up --with-starter-schema to apply them",
      );
      const status = await runCli(["migrate", "status"], { DATABASE_URL: old.url });
      expect(status.lines.map((l) => l.message).filter((m) => m.startsWith("pending"))).toEqual([
        "pending starter_0003_hourly_series",
      ]);

      const starter = await runCli(["migrate", "up", "--with-starter-schema"], { DATABASE_URL: old.url });
      expect(starter.code, starter.stderr).toBe(0);
      const fn = await old.pool.query(
        `SELECT prosrc LIKE '%telemetry_jobs.rollup_changes%' AS reads_changes FROM pg_proc
          WHERE oid = 'public.telemetry_hourly_series(text, text, timestamptz, timestamptz)'::regprocedure`,
      );
      expect(fn.rows[0].reads_changes).toBe(true);
      const rows = await old.pool.query(`SELECT count(*)::int AS n FROM public.telemetry_points`);
      expect(rows.rows[0].n).toBe(1);
    } finally {
      await old.drop();
    }
  });

  it("a new database with the starter schema and an upgraded one of release 0007 have the same public and telemetry_jobs", async () => {
    const fresh = await createTestDatabase({ migrated: false });
    const old = await createTestDatabase({ migrated: false });
    try {
      await migrateToLatest(fresh.db, { starterSchema: true });
      throwIfFailed(await createRelease0007Migrator(old.db).migrateToLatest());
      await migrateToLatest(old.db, { starterSchema: false });
      // Storage file numbers differ between any two databases; the migration histories are compared
      // by name below.
      const comparable = (items: string[]) =>
        items.map((item) => item.replace(/ file=\d+/, "")).filter((item) => !item.includes("kysely_"));
      for (const schema of ["public", "telemetry_jobs"])
        expect(comparable(await schemaCatalog(fresh.url, schema)), schema).toEqual(
          comparable(await schemaCatalog(old.url, schema)),
        );
      for (const set of ["product", "starter"] as const) {
        const names = async (db: TestDatabase) =>
          (await migrationStatus(db.db, set)).map((m) => `${m.name} ${m.executedAt !== undefined}`);
        expect(await names(fresh), set).toEqual(await names(old));
      }
    } finally {
      await fresh.drop();
      await old.drop();
    }
  });
});
