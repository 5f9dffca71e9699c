import { sql } from "kysely";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const POINTS = { table: "public.telemetry_points", timeColumn: "ts", interval: "monthly", premake: 3 };

async function resetPoints() {
  // Back to the migrated state: parent + DEFAULT, no children, no rows.
  for (const p of await partitionsOf(t.url, "public.telemetry_points")) {
    if (p.name !== "telemetry_points_default") await t.pool.query(`DROP TABLE public.${p.name}`);
  }
  await t.pool.query("TRUNCATE public.telemetry_points, telemetry_jobs.job_runs CASCADE");
  await t.pool.query("DELETE FROM public.devices");
  await t.pool.query("INSERT INTO public.devices (id) SELECT 'dev-' || g FROM generate_series(1, 5) g");
}

async function insertPoints(tsList: string[]) {
  await t.pool.query(
    `INSERT INTO public.telemetry_points (device_id, ts, metrics)
     SELECT 'dev-' || (1 + i % 5), x::timestamptz, jsonb_build_object('temp', i)
       FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i)`,
    [tsList],
  );
}

async function count(sqlText: string): Promise<number> {
  return Number((await t.pool.query(sqlText)).rows[0].n);
}

beforeEach(resetPoints);

describe("partition-manager", () => {
  it("with no data, monthly premake 3 at 2026-11-21 creates Nov 2026 to Feb 2027; a second run does nothing", async () => {
    const config = makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" });
    const first = await runPartitionManager(t.db, config);
    expect(first.exitCode).toBe(0);
    expect(await partitionsOf(t.url, "public.telemetry_points")).toEqual([
      { name: "telemetry_points_default", bound: "DEFAULT" },
      {
        name: "telemetry_points_p202611",
        bound: "FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')",
      },
      {
        name: "telemetry_points_p202612",
        bound: "FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')",
      },
      {
        name: "telemetry_points_p202701",
        bound: "FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00')",
      },
      {
        name: "telemetry_points_p202702",
        bound: "FOR VALUES FROM ('2027-02-01 00:00:00+00') TO ('2027-03-01 00:00:00+00')",
      },
    ]);
    const audited = await t.pool.query(
      "SELECT kind, partition_name, outcome FROM telemetry_jobs.job_actions ORDER BY id",
    );
    expect(audited.rows.map((r) => r.partition_name)).toEqual([
      "telemetry_points_p202611",
      "telemetry_points_p202612",
      "telemetry_points_p202701",
      "telemetry_points_p202702",
    ]);

    const second = await runPartitionManager(t.db, config);
    expect(second.exitCode).toBe(0);
    expect(second.summary.actions).toEqual({});
    expect(second.logs.some((l) => l.message === "partitions are up to date: nothing to do")).toBe(true);
    expect(await count("SELECT count(*) AS n FROM telemetry_jobs.job_actions")).toBe(4);
  });

  it("premake does not depend on data: a month later, with no new rows, the window moves on", async () => {
    await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }));
    const later = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS], { now: "2026-12-31T23:59:59Z" }),
    );
    expect(later.summary.actions).toEqual({ create_partition: 1 });
    expect((await partitionsOf(t.url, "public.telemetry_points")).map((p) => p.name)).toContain(
      "telemetry_points_p202703",
    );
  });

  it("rows for a future month that landed in DEFAULT are moved into the new partition; totals unchanged", async () => {
    await insertPoints([
      "2027-01-05T10:00:00Z",
      "2027-01-31T23:59:59.999Z",
      "2027-01-01T00:00:00Z",
      "2026-11-21T08:00:00Z",
      "2031-06-01T00:00:00Z", // far beyond premake: stays in DEFAULT, reported
    ]);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_default")).toBe(5);
    const run = await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }));
    expect(run.exitCode).toBe(0);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points")).toBe(5);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_p202701")).toBe(3);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_p202611")).toBe(1);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_default")).toBe(1);
    expect(
      await count("SELECT count(*) AS n FROM public.telemetry_points_default WHERE ts < '2027-03-01'"),
    ).toBe(0);
    expect(run.logs.some((l) => l.finding === "default_rows_beyond_horizon")).toBe(true);
    const moved = await t.pool.query(
      "SELECT partition_name, rows FROM telemetry_jobs.job_actions WHERE rows > 0 ORDER BY partition_name",
    );
    expect(moved.rows).toEqual([
      { partition_name: "telemetry_points_p202611", rows: "1" },
      { partition_name: "telemetry_points_p202701", rows: "3" },
    ]);
  });

  it("historical rows in DEFAULT get their own partitions, and the gaps up to today are filled", async () => {
    await insertPoints(["2026-06-15T00:00:00Z", "2026-06-16T00:00:00Z"]);
    const run = await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }));
    expect(run.exitCode).toBe(0);
    const names = (await partitionsOf(t.url, "public.telemetry_points")).map((p) => p.name);
    expect(names).toEqual([
      "telemetry_points_default",
      "telemetry_points_p202606",
      "telemetry_points_p202607",
      "telemetry_points_p202608",
      "telemetry_points_p202609",
      "telemetry_points_p202610",
      "telemetry_points_p202611",
      "telemetry_points_p202612",
      "telemetry_points_p202701",
      "telemetry_points_p202702",
    ]);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_p202606")).toBe(2);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_default")).toBe(0);
  });

  it("children get the parent's indexes, constraints and foreign keys; pruning works", async () => {
    await runPartitionManager(t.db, makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }));
    const idx = await t.pool.query(
      "SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'telemetry_points_p202612'",
    );
    expect(idx.rows[0].n).toBe(4); // primary key, (device_id, ts), (ingest_xid, ts), (ts)
    await expect(
      t.pool.query(
        "INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('no-such-device', '2026-12-02', '{}')",
      ),
    ).rejects.toThrow(/foreign key/);
    const plan = await t.pool.query(
      "EXPLAIN (FORMAT JSON) SELECT * FROM public.telemetry_points WHERE ts >= '2026-12-03' AND ts < '2026-12-04'",
    );
    const text = JSON.stringify(plan.rows[0]);
    expect(text).toContain("telemetry_points_p202612");
    expect(text).not.toContain("telemetry_points_p202611");
    expect(text).not.toContain("telemetry_points_default");
  });

  it("dry run prints the plan and changes nothing", async () => {
    await insertPoints(["2027-01-05T10:00:00Z"]);
    const before = await partitionsOf(t.url, "public.telemetry_points");
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z", dryRun: true }),
    );
    expect(run.exitCode).toBe(0);
    expect(run.logs.filter((l) => l.message.startsWith("would create")).length).toBe(4);
    expect(await partitionsOf(t.url, "public.telemetry_points")).toEqual(before);
    expect(await count("SELECT count(*) AS n FROM telemetry_jobs.job_runs")).toBe(0);
    expect(await count("SELECT count(*) AS n FROM public.telemetry_points_default")).toBe(1);
  });

  it("a run that finds the advisory lock held skips the table and exits 0", async () => {
    // The holder is a real run, frozen between two of its transactions (its first table is made,
    // not attached): a lock that lasted only as long as a transaction would be free by now.
    const holder = startCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POINTS] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-create-table",
    });
    try {
      await holder.waitFor("paused at fault point");
      const held = await t.pool.query(
        `SELECT a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1
            AND l.objid = hashtext($2)::oid AND a.application_name = 'telemetry-jobs/partition-manager'
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [0x746a, "partition-manager:public.telemetry_points"],
      );
      expect(held.rows).toEqual([{ state: "idle" }]); // held by the session, outside any transaction
      const run = await runPartitionManager(
        t.db,
        makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }),
      );
      expect(run.exitCode).toBe(0);
      expect(run.status).toBe("skipped");
      expect(run.logs.some((l) => l.message.includes("another run holds the lock"))).toBe(true);
      expect((await partitionsOf(t.url, "public.telemetry_points")).length).toBe(1);
    } finally {
      holder.child.kill("SIGKILL");
      await holder.done;
    }
    // Once the killed run's session is gone, the next run takes the lock and finishes its work.
    for (let i = 0; ; i++) {
      const left = await t.pool.query(
        // Advisory locks are server-wide objects: other test files' runs on the same table name
        // hold the same key in their own databases.
        `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = hashtext($2)::oid
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [0x746a, "partition-manager:public.telemetry_points"],
      );
      if (left.rows.length === 0) break;
      if (i > 200) throw new Error("the killed run's session still holds its advisory lock");
      await new Promise((r) => setTimeout(r, 50));
    }
    const next = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS], { now: "2026-11-21T00:00:00Z" }),
    );
    expect(next.status).toBe("ok");
    expect((await partitionsOf(t.url, "public.telemetry_points")).length).toBe(5);
  });

  it("two runs started together: one does the work, the other skips", async () => {
    const config = makeConfig(t.url, [{ ...POINTS, interval: "daily", premake: 40 }], {
      now: "2026-11-21T00:00:00Z",
    });
    const [a, b] = await Promise.all([runPartitionManager(t.db, config), runPartitionManager(t.db, config)]);
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    // Either they overlapped (one skipped) or ran back to back (the second found nothing to do);
    // in both cases every partition was created exactly once.
    const created = (a.summary.actions.create_partition ?? 0) + (b.summary.actions.create_partition ?? 0);
    expect(created).toBe(41);
    expect((await partitionsOf(t.url, "public.telemetry_points")).length).toBe(42);
  });

  it("a table that fails does not stop or undo the other tables", async () => {
    await t.pool.query("CREATE TABLE public.telemetry_points_p202611 (x int)"); // squats the name
    const rollups = { table: "public.telemetry_rollups_hourly", timeColumn: "bucket_ts", premake: 1 };
    const run = await runPartitionManager(
      t.db,
      makeConfig(t.url, [POINTS, rollups], { now: "2026-11-21T00:00:00Z" }),
    );
    expect(run.exitCode).toBe(1);
    expect(run.tables).toEqual({
      "public.telemetry_points": "failed",
      "public.telemetry_rollups_hourly": "ok",
    });
    expect(run.logs.some((l) => String(l.error ?? "").includes("did not create"))).toBe(true);
    expect((await partitionsOf(t.url, "public.telemetry_rollups_hourly")).length).toBe(3);
    await t.pool.query("DROP TABLE public.telemetry_points_p202611");
    await sql`SELECT 1`.execute(t.db);
  });
});
