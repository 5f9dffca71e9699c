// How often a job run reads the same catalog facts. Every statement a job sends goes through the
// Kysely instance it is given; one built with a `log` hook counts them. The statements are told
// apart by what they select (each reader names its columns): the adoption facts (the rollup
// target's state, the source's ingest_xid column) and whether a rollup target exists yet.
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionOptions } from "../../shared/db/connect.ts";
import type { DB } from "../../shared/db/schema.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRollup } from "../support/jobs.ts";

const NOW = "2026-06-10T10:30:00Z";
const SOURCE = {
  table: "public.telemetry_points",
  timeColumn: "ts",
  rollup: { target: "public.points_hourly", batchPauseMs: 0 },
};
const TARGET = { table: "public.points_hourly", timeColumn: "bucket_ts", premake: 1 };

/** What each catalog read selects, as its statement spells it. */
const READS = {
  targetState: /IS NOT NULL AS table/,
  ingestColumn: /AS time_exists/,
  targetExists: /IS NOT NULL AS exists/,
};

let t: TestDatabase;
let pool: pg.Pool;
let counted: Kysely<DB>;
const statements: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  pool = new pg.Pool({ connectionString: t.url, max: 5, ...sessionOptions("test") });
  pool.on("error", () => {});
  counted = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      statements.push(event.query.sql);
    },
  });
  await t.pool.query(
    `INSERT INTO public.devices (id) VALUES ('d1'), ('d2') ON CONFLICT DO NOTHING;
     INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'd' || (g % 2 + 1), timestamptz '2026-06-08 00:00Z' + g * interval '7 minutes', jsonb_build_object('temp', g % 11)
       FROM generate_series(1, 500) g`,
  );
});
afterAll(async () => {
  await counted.destroy();
  await t.drop();
});

/** How many statements of each read one run sent. */
function reads(run: () => Promise<unknown>): Promise<Record<keyof typeof READS, number>> {
  statements.length = 0;
  return run().then(() => {
    const count = (re: RegExp) => statements.filter((s) => re.test(s)).length;
    return {
      targetState: count(READS.targetState),
      ingestColumn: count(READS.ingestColumn),
      targetExists: count(READS.targetExists),
    };
  });
}

describe("catalog reads per run", () => {
  it("a job reads whether a rollup target exists once per run", async () => {
    const config = makeConfig(t.url, [SOURCE, TARGET], { now: NOW });
    const pm = await reads(async () => {
      const run = await runPartitionManager(counted, config);
      expect(run.exitCode).toBe(0);
      expect(run.logs.some((l) => /points_hourly does not exist yet/.test(l.message))).toBe(true);
    });
    // One statement per selected table that is some policy's rollup target: points_hourly.
    expect(pm.targetExists).toBe(1);
  });

  it("rollup-hourly on an adopted source reads the adoption facts once per run", async () => {
    const config = makeConfig(t.url, [SOURCE, TARGET], { now: NOW });
    const first = await runRollup(counted, config);
    expect(first.exitCode, JSON.stringify(first.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    const steady = await reads(async () => {
      const run = await runRollup(counted, config);
      expect(run.exitCode).toBe(0);
      expect(run.summary.actions).toEqual({ incremental: 1 });
    });
    // The source's insert tracking is read twice: by the policy check (what adoption would refuse,
    // before the job takes any lock) and by the adoption step; the target's state by the adoption
    // step alone. No rollup target is selected (rollup-hourly works on sources), so none is asked for.
    expect(steady).toEqual({ targetState: 1, ingestColumn: 2, targetExists: 0 });
  });
});
