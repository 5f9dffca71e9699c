// partition-manager against what a live database brings while it runs or by its settings:
// - the application adds a column between the job's catalog read and the rescue of DEFAULT's rows:
//   the moved rows must keep that column's values (they were reset to its default);
// - a database whose DateStyle is not ISO: bounds and timestamps must be read the same way (every
//   child was reported as "a bound this tool does not interpret" and left alone);
// - a standalone table that holds rows and still carries the bound marker (an operator's plain
//   DETACH to inspect a partition) is never dropped to rebuild it.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runCli, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-11-21T00:00:00Z";

function expectOk(run: { exitCode: number; logs: { severity?: string }[] }) {
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
}

describe("partition-manager and a changing or unusual database", () => {
  it("a column added during the run keeps its value in the rows moved out of DEFAULT", async () => {
    await t.pool.query(
      "CREATE TABLE public.sc (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    await t.pool.query("CREATE TABLE public.sc_default PARTITION OF public.sc DEFAULT");
    const app = new pg.Client({ connectionString: t.url });
    await app.connect();
    try {
      await app.query("BEGIN");
      await app.query("LOCK TABLE ONLY public.sc IN ACCESS EXCLUSIVE MODE");
      const run = runPartitionManager(
        t.db,
        makeConfig(t.url, [{ table: "public.sc", timeColumn: "ts", premake: 0, lockTimeoutMs: 20_000 }], {
          now: NOW,
        }),
      );
      // The job has read its catalog and now waits for the parent (its CREATE TABLE ... LIKE).
      let waiting = false;
      for (let i = 0; i < 4000 && !waiting; i++) {
        const r = await t.pool.query(
          "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'public.sc'::regclass AND pid <> $1",
          [(await app.query("SELECT pg_backend_pid() AS p")).rows[0].p],
        );
        waiting = (r.rowCount ?? 0) > 0;
        if (!waiting) await new Promise((r) => setTimeout(r, 5));
      }
      expect(waiting).toBe(true);
      await app.query("ALTER TABLE public.sc ADD COLUMN note text DEFAULT 'n/a'");
      await app.query("INSERT INTO public.sc (id, ts, note) VALUES (1, '2026-11-05Z', 'important')");
      await app.query("COMMIT");
      expectOk(await run);
    } finally {
      await app.end();
    }
    const rows = await t.pool.query("SELECT tableoid::regclass::text AS part, id, note FROM public.sc");
    expect(rows.rows).toEqual([{ part: "sc_p202611", id: 1, note: "important" }]);
  });

  it("a database whose DateStyle is SQL, DMY: the second run reads the bounds the first one made", async () => {
    await t.pool.query(
      "CREATE TABLE public.ds (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    await t.pool.query(`ALTER DATABASE ${t.name} SET DateStyle = 'SQL, DMY'`);
    try {
      const env = {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ table: "public.ds", timeColumn: "ts" }] }),
      };
      for (let i = 0; i < 2; i++) {
        const run = await runCli(["partition-manager", "--now", NOW], env);
        expect(run.code).toBe(0);
        const warnings = run.lines.filter((l) => l.severity === "WARNING").map((l) => l.message);
        expect(warnings.filter((m) => /does not interpret/.test(m))).toEqual([]);
      }
    } finally {
      await t.pool.query(`ALTER DATABASE ${t.name} RESET DateStyle`);
    }
    expect((await partitionsOf(t.url, "public.ds")).map((p) => p.name)).toEqual([
      "ds_default",
      "ds_p202611",
      "ds_p202612",
      "ds_p202701",
      "ds_p202702",
    ]);
  });

  it("a rescue does not queue behind a long-open transaction on the parent: it backs off, names it, and finishes later", async () => {
    await t.pool.query(
      "CREATE TABLE public.st (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    await t.pool.query(
      "CREATE TABLE public.st_p202610 PARTITION OF public.st FOR VALUES FROM ('2026-10-01Z') TO ('2026-11-01Z')",
    );
    await t.pool.query("CREATE TABLE public.st_default PARTITION OF public.st DEFAULT");
    await t.pool.query("INSERT INTO public.st VALUES (1, '2026-10-05Z'), (2, '2026-11-05Z')");
    const policy = { table: "public.st", timeColumn: "ts", premake: 0, retryBudgetMs: 3_000 };
    // A report that read October (pruned: it holds only the parent and October) and stays open.
    const report = new pg.Client({ connectionString: t.url });
    await report.connect();
    let sampling = true;
    let waitersSeen = 0;
    try {
      await report.query("BEGIN");
      await report.query("SELECT count(*) FROM public.st WHERE ts >= '2026-10-01Z' AND ts < '2026-11-01Z'");
      // Any session that waits on the parent while the job runs would be queued behind the job.
      const sampler = (async () => {
        while (sampling) {
          const r = await t.pool.query(
            "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'public.st'::regclass AND NOT granted",
          );
          waitersSeen += r.rows[0].n;
        }
      })();
      await new Promise((r) => setTimeout(r, 300)); // the report's transaction is now "long"
      const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
      sampling = false;
      await sampler;
      expect(run.exitCode).toBe(1);
      const errors = run.logs
        .filter((l) => l.severity === "ERROR")
        .map((l) => `${l.message} ${l.error ?? ""}`);
      expect(errors.join("\n")).toMatch(/in a transaction older than/);
      expect(waitersSeen).toBe(0);
    } finally {
      sampling = false;
      await report.query("ROLLBACK");
      await report.end();
    }
    expectOk(await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW })));
    const rows = await t.pool.query("SELECT tableoid::regclass::text AS part, id FROM public.st ORDER BY id");
    expect(rows.rows).toEqual([
      { part: "st_p202610", id: 1 },
      { part: "st_p202611", id: 2 },
    ]);
  });

  it("a standalone table with the bound marker that holds rows is refused, never dropped", async () => {
    await t.pool.query(
      "CREATE TABLE public.lo (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    const policy = { table: "public.lo", timeColumn: "ts", premake: 0, defaultPartition: false };
    expectOk(await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW })));
    await t.pool.query("INSERT INTO public.lo VALUES (1, '2026-11-05Z')");
    // An operator detaches the partition to look at it; it keeps telemetry_jobs_bound.
    await t.pool.query("ALTER TABLE public.lo DETACH PARTITION public.lo_p202611");
    const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
    expect(run.exitCode).toBe(1);
    const errors = run.logs.filter((l) => l.severity === "ERROR").map((l) => `${l.message} ${l.error ?? ""}`);
    expect(errors.join("\n")).toMatch(/holds rows/);
    const kept = await t.pool.query("SELECT id FROM public.lo_p202611");
    expect(kept.rows).toEqual([{ id: 1 }]);
  });
});
