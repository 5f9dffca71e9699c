// SIGKILL a real partition-manager process between the steps of a creation, then run it normally:
// the database must end exactly as an uninterrupted run leaves it, with no row lost or duplicated.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, startCli } from "../support/jobs.ts";

const POINTS = { table: "public.telemetry_points", timeColumn: "ts", interval: "monthly", premake: 3 };
const NOW = "2026-11-21T00:00:00Z";

interface State {
  partitions: { name: string; bound: string }[];
  strayTables: string[];
  rowsByPartition: Record<string, number>;
  checksum: string;
}

async function state(url: string): Promise<State> {
  const client = new pg.Client({ connectionString: url, options: "-c TimeZone=UTC" });
  await client.connect();
  try {
    const stray = await client.query(
      "SELECT relname FROM pg_class WHERE relname LIKE 'telemetry_points_p%' AND relkind = 'r' AND NOT relispartition ORDER BY 1",
    );
    const rows = await client.query(
      "SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM public.telemetry_points GROUP BY 1 ORDER BY 1",
    );
    const sum = await client.query(
      "SELECT md5(string_agg(message_id || '@' || ts::text, ',' ORDER BY message_id)) AS c FROM public.telemetry_points",
    );
    return {
      partitions: await partitionsOf(url, "public.telemetry_points"),
      strayTables: stray.rows.map((r) => r.relname),
      rowsByPartition: Object.fromEntries(rows.rows.map((r) => [r.part, r.n])),
      checksum: sum.rows[0].c,
    };
  } finally {
    await client.end();
  }
}

async function seed(t: TestDatabase) {
  await t.pool.query("INSERT INTO public.devices (id) VALUES ('dev-1')");
  // Rows in DEFAULT for November 2026 and January 2027, before their partitions exist.
  await t.pool.query(`
    INSERT INTO public.telemetry_points (device_id, message_id, ts, metrics)
    SELECT 'dev-1', 'm' || g, CASE WHEN g % 2 = 0 THEN '2026-11-15'::timestamptz ELSE '2027-01-15'::timestamptz END
           + g * interval '1 second', '{}'
      FROM generate_series(1, 500) g`);
}

let reference: State;
let refDb: TestDatabase;
beforeAll(async () => {
  refDb = await createTestDatabase();
  await seed(refDb);
  const run = await runPartitionManager(refDb.db, makeConfig(refDb.url, [POINTS], { now: NOW }));
  expect(run.exitCode).toBe(0);
  reference = await state(refDb.url);
  expect(reference.rowsByPartition).toEqual({ telemetry_points_p202611: 250, telemetry_points_p202701: 250 });
});
afterAll(async () => {
  await refDb.drop();
});

describe.each([
  ["after-create-table", "standalone table made, not yet attached"],
  ["after-move-rows", "rows moved out of DEFAULT inside the attach transaction, not committed"],
])("SIGKILL at %s (%s), then a normal run", (faultPoint) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
    await seed(t);
  });
  afterAll(async () => {
    await t.drop();
  });

  it("leaves a valid database that the next run completes exactly", async () => {
    const before = await state(t.url);
    const cli = startCli(["partition-manager", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POINTS] }),
      TELEMETRY_JOBS_FAULT_PAUSE: faultPoint,
    });
    await cli.waitFor("paused at fault point");
    cli.child.kill("SIGKILL");
    const exit = await cli.done;
    expect(exit.signal).toBe("SIGKILL");

    // Killed: every row is still there, visible through the parent, exactly once.
    const killed = await state(t.url);
    expect(killed.checksum).toBe(before.checksum);
    expect(Object.values(killed.rowsByPartition).reduce((a, b) => a + b, 0)).toBe(500);
    if (faultPoint === "after-create-table") expect(killed.strayTables).toEqual(["telemetry_points_p202611"]);

    // The server may still be rolling back the killed session; the next run retries its locks.
    const run = await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: NOW }));
    expect(run.exitCode).toBe(0);
    expect(await state(t.url)).toEqual(reference);
  });
});
