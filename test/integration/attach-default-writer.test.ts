// An attach beside a DEFAULT partition holds DEFAULT, then asks for the parent with a short wait. A
// writer whose row goes to DEFAULT takes the parent first, then waits for DEFAULT: if it arrives
// between our two lock requests, each of us waits for the other and our short wait gives up. The
// attach used to read DEFAULT (is any row of the range there?) between the two, so with a large
// DEFAULT and a steady writer into it nearly every attempt met an insert, and the attach failed
// once its retry budget ran out: the run exited 1 and the partition was never made (CI saw this in
// the refused-rescue test on a loaded machine). The read now comes before both locks; a row of the
// range that arrives in DEFAULT after it is moved only under the lock a move needs.
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

// In the past: December 2026 then starts before the server's clock, so its attach takes the path
// that reads DEFAULT (a range ahead of the clock by more than a day is guarded instead).
const NOW = "2026-11-21T00:00:00Z";
// Enough rows that reading DEFAULT takes several times the writer's pace.
const DEFAULT_ROWS = 500_000;

describe("an attach beside a DEFAULT that a writer keeps inserting into", () => {
  it("is made within its retry budget, and no insert fails", async () => {
    await t.pool.query(
      "CREATE TABLE public.ad (id bigint NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)",
    );
    const policy = { table: "public.ad", timeColumn: "ts", premake: 0, retryBudgetMs: 10_000 };
    expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
    // Rows years beyond any premake horizon (a device clock set wrong): they stay in DEFAULT.
    await t.pool.query(
      `INSERT INTO public.ad SELECT g, '2031-01-01Z'::timestamptz + g * interval '1 second', g
         FROM generate_series(1, ${DEFAULT_ROWS}) g`,
    );

    const writer = new pg.Client({ connectionString: t.url });
    await writer.connect();
    let writing = true;
    let written = 0;
    let failed = 0;
    const writes = (async () => {
      for (let i = 1; writing; i++) {
        try {
          await writer.query("INSERT INTO public.ad VALUES ($1, '2031-06-01Z', 0)", [-i]);
          written++;
        } catch {
          failed++;
        }
        // Paced like ingestion: each insert routed to DEFAULT.
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    let run: Awaited<ReturnType<typeof runPartitionManager>>;
    try {
      while (written < 3) await new Promise((r) => setTimeout(r, 10));
      run = await runPartitionManager(t.db, makeConfig(t.url, [{ ...policy, premake: 2 }], { now: NOW }));
    } finally {
      writing = false;
      await writes;
      await writer.end();
    }
    const loud = run.logs.filter((l) => l.severity === "ERROR").map((l) => JSON.stringify(l));
    expect(run.exitCode, loud.join("\n")).toBe(0);
    expect((await partitionsOf(t.url, "public.ad")).map((p) => p.name)).toEqual([
      "ad_default",
      "ad_p202611",
      "ad_p202612",
      "ad_p202701",
    ]);
    expect(written).toBeGreaterThan(3);
    expect(failed).toBe(0);
    const inDefault = await t.pool.query("SELECT count(*)::int AS n FROM ONLY public.ad_default");
    expect(inDefault.rows[0].n).toBe(DEFAULT_ROWS + written);
  }, 120_000);
});

describe("a row of the range that reaches DEFAULT after the attach read DEFAULT", () => {
  it("is moved on a retry that holds the parent in ACCESS EXCLUSIVE", async () => {
    await t.pool.query(
      "CREATE TABLE public.ar (id bigint NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
    );
    const policy = { table: "public.ar", timeColumn: "ts", premake: 0 };
    expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
    const resume = path.join(tmpdir(), `tj-attach-probe-${process.pid}`);
    rmSync(resume, { force: true });
    try {
      const run = startCli(["partition-manager", "--now", NOW], {
        DATABASE_URL: t.url,
        TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [{ ...policy, premake: 1 }] }),
        TELEMETRY_JOBS_FAULT_PAUSE: "attach-after-probe",
        TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
      });
      // December's attach has read DEFAULT (no row of December) and has not asked for its locks yet.
      await run.waitFor("paused at fault point");
      await t.pool.query("INSERT INTO public.ar VALUES (1, '2026-12-05Z')");
      writeFileSync(resume, "");
      const { code } = await run.done;
      expect(code, run.stderr).toBe(0);
      const retry = run.lines.find((l) => l.message === "lock not available, retrying");
      expect(JSON.stringify(retry?.error)).toContain("arrived in DEFAULT while the attach took its locks");
    } finally {
      rmSync(resume, { force: true });
    }
    const where = await t.pool.query("SELECT tableoid::regclass::text AS part FROM public.ar");
    expect(where.rows).toEqual([{ part: "ar_p202612" }]);
    const moved = await t.pool.query(
      `SELECT rows::int AS rows FROM telemetry_jobs.job_actions
        WHERE table_name = 'public.ar' AND partition_name = 'ar_p202612' AND kind = 'create_partition'`,
    );
    expect(moved.rows).toEqual([{ rows: 1 }]);
  }, 60_000);
});

describe("a DEFAULT partition that is itself partitioned, holding rows of the range", () => {
  it("has them moved into the new partition", async () => {
    await t.pool.query(`
      CREATE TABLE public.sd (id bigint NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
      CREATE TABLE public.sd_p202611 PARTITION OF public.sd FOR VALUES FROM ('2026-11-01Z') TO ('2026-12-01Z');
      CREATE TABLE public.sd_default PARTITION OF public.sd DEFAULT PARTITION BY LIST (id);
      CREATE TABLE public.sd_default_all PARTITION OF public.sd_default DEFAULT;
      INSERT INTO public.sd VALUES (1, '2026-12-05Z'), (2, '2031-01-01Z');`);
    const policy = { table: "public.sd", timeColumn: "ts", premake: 1, retryBudgetMs: 5_000 };
    const run = await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }));
    const loud = run.logs.filter((l) => l.severity === "ERROR").map((l) => JSON.stringify(l));
    expect(run.exitCode, loud.join("\n")).toBe(0);
    const where = await t.pool.query(
      "SELECT id::int, tableoid::regclass::text AS part FROM public.sd ORDER BY id",
    );
    expect(where.rows).toEqual([
      { id: 1, part: "sd_p202612" },
      { id: 2, part: "sd_default_all" },
    ]);
  }, 60_000);
});
