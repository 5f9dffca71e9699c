// The hourly rollup raises work_mem for the recompute of newly final hours (a hash aggregate instead
// of an external sort), transaction-locally. It must only ever raise it: an operator who gave the
// job's database or role more memory keeps it. Seen from inside the run by a statement trigger on the
// rollup target, which records the work_mem in force when the recompute writes its buckets.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { DB } from "../../shared/db/schema.ts";
import { createTestDatabase, ignoringDroppedDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRollup } from "../support/jobs.ts";

let t: TestDatabase;
const POLICY = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const FIRST_HOUR = "2026-06-10T09:00:00Z";

beforeAll(async () => {
  t = await createTestDatabase();
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: "public.telemetry_points", timeColumn: "ts" }], { now: FIRST_HOUR }),
  );
  expect(pm.exitCode).toBe(0);
  await t.pool.query(`
    INSERT INTO public.devices (id) VALUES ('dev1');
    CREATE TABLE public.work_mem_seen (hour int, setting text);
    CREATE FUNCTION public.record_work_mem() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO public.work_mem_seen VALUES (current_setting('test.hour')::int, current_setting('work_mem'));
        RETURN NULL;
      END $$;`);
});
afterAll(async () => {
  await t.drop();
});

/** Writes rows into hour `hour` (after FIRST_HOUR), then rolls up once that hour is final. */
async function rollUpHour(hour: number): Promise<string[]> {
  const start = `timestamptz '${FIRST_HOUR}' + interval '${hour} hours'`;
  await t.pool.query(`
    INSERT INTO public.telemetry_points (device_id, ts, metrics)
    SELECT 'dev1', ${start} + g * interval '1 second', jsonb_build_object('temp', g)
      FROM generate_series(1, 100) g`);
  await t.pool.query(`ALTER DATABASE ${t.name} SET test.hour = '${hour}'`);
  const now = new Date(Date.parse(FIRST_HOUR) + (hour + 1.5) * 3_600_000).toISOString();
  // Sessions of their own: database settings apply to sessions that start after they are set.
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool: ignoringDroppedDatabase(new pg.Pool({ connectionString: t.url })) }),
  });
  const run = await runRollup(db, makeConfig(t.url, [POLICY], { now })).finally(() => db.destroy());
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
  const seen = await t.pool.query("SELECT DISTINCT setting FROM public.work_mem_seen WHERE hour = $1", [
    hour,
  ]);
  return seen.rows.map((r) => r.setting as string);
}

it("raises a smaller work_mem for the newly final hours, and keeps a larger one", async () => {
  // The first run creates the rollup target; the trigger goes on it afterwards.
  await rollUpHour(0);
  await t.pool.query(`
    CREATE TRIGGER record_work_mem AFTER INSERT ON public.telemetry_rollups_hourly
      FOR EACH STATEMENT EXECUTE FUNCTION public.record_work_mem()`);

  await t.pool.query(`ALTER DATABASE ${t.name} SET work_mem = '1MB'`);
  expect(await rollUpHour(1)).toContain("64MB");

  await t.pool.query(`ALTER DATABASE ${t.name} SET work_mem = '256MB'`);
  expect(await rollUpHour(2)).toEqual(["256MB"]);
});
