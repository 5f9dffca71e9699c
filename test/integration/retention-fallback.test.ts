// The row-delete fallback on a plain 1M-row table with an index on its time column (so deleted in
// time order): exact, resumable across runs with a small time budget, safe under SIGKILL, and
// harmless to concurrent inserts and reads. Then, without the index, a block-range pass that
// resumes and wraps round. Plus bad retention policies and two runs at once.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalogSnapshot } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { applyPlainRowDelete, makeConfig, runCli, runRetention, startCli } from "../support/jobs.ts";

let t: TestDatabase;
const NOW = "2026-03-01T00:00:00Z";
const CUTOFF = "2026-02-01T00:00:00Z"; // keep 28 days

beforeAll(async () => {
  t = await createTestDatabase();
  // 1M rows over ~60 days, one every ~5.2 s: 2026-01-01 .. 2026-03-02; about half before the cutoff.
  await t.pool.query(`
    CREATE TABLE public.legacy_readings (id bigint PRIMARY KEY, recorded_at timestamptz NOT NULL, value float8);
    INSERT INTO public.legacy_readings
      SELECT g, '2026-01-01'::timestamptz + g * interval '5.2 seconds', g % 100 FROM generate_series(1, 1000000) g;
    CREATE INDEX ON public.legacy_readings (recorded_at);
    ANALYZE public.legacy_readings;`);
});
afterAll(async () => {
  await t.drop();
});

const PLAIN = (retention: Record<string, unknown> = {}) => ({
  table: "public.legacy_readings",
  timeColumn: "recorded_at",
  partitioned: false,
  retention: { keep: "28 days", batchSize: 20_000, batchPauseMs: 0, ...retention },
});

async function counts() {
  const r = await t.pool.query(
    `SELECT count(*) FILTER (WHERE recorded_at < $1)::int AS expired, count(*) FILTER (WHERE recorded_at >= $1)::int AS kept,
            coalesce(sum(id) FILTER (WHERE recorded_at >= $1), 0)::text AS kept_checksum
       FROM public.legacy_readings`,
    [CUTOFF],
  );
  return r.rows[0] as { expired: number; kept: number; kept_checksum: string };
}

describe("row-delete fallback on a plain table", () => {
  it("a SIGKILL in the middle loses no row newer than the cutoff; small time budgets finish over several runs", async () => {
    const start = await counts();
    expect(start.expired).toBeGreaterThan(400_000);
    expect(start.kept).toBeGreaterThan(400_000);

    // 1. Kill a real process while it deletes.
    const cli = startCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [PLAIN({ batchSize: 2_000, batchPauseMs: 0 })] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-delete-batch", // ten batches committed, then frozen
    });
    await cli.waitFor("paused at fault point");
    cli.child.kill("SIGKILL");
    await cli.done;
    const afterKill = await counts();
    expect(afterKill.expired).toBeLessThan(start.expired); // it was killed while deleting
    expect(afterKill.expired).toBeGreaterThan(0);
    expect(afterKill.kept).toBe(start.kept);
    expect(afterKill.kept_checksum).toBe(start.kept_checksum);

    // 2. Runs with a 100 ms budget each, until nothing is left (bounded).
    let runs = 0;
    for (; runs < 60; runs++) {
      const run = await runRetention(
        t.db,
        makeConfig(t.url, [PLAIN({ timeBudgetMs: 100, batchSize: 10_000, batchPauseMs: 30 })], { now: NOW }),
      );
      expect(run.exitCode).toBe(0);
      if ((await counts()).expired === 0) break;
    }
    expect(runs).toBeGreaterThan(2); // it needed several budgets
    const paths = await t.pool.query(
      `SELECT DISTINCT detail->>'path' AS path FROM telemetry_jobs.job_actions WHERE kind = 'delete_rows'`,
    );
    expect(new Set(paths.rows.map((r) => r.path.replace(/\(.*/, "")))).toEqual(
      new Set(["batched delete in time order by index legacy_readings_recorded_at_idx "]),
    );
    const end = await counts();
    expect(end).toEqual({ expired: 0, kept: start.kept, kept_checksum: start.kept_checksum });
  });

  it("inserts and reads running during retention never fail; two runs at once: one skips", async () => {
    await t.pool.query(`
      INSERT INTO public.legacy_readings
        SELECT 2000000 + g, '2026-01-15'::timestamptz + g * interval '1 second', 1 FROM generate_series(1, 50000) g`);
    const writer = new pg.Client({ connectionString: t.url });
    const reader = new pg.Client({ connectionString: t.url });
    writer.on("error", () => {});
    reader.on("error", () => {});
    await writer.connect();
    await reader.connect();
    const errors: string[] = [];
    let stop = false;
    let inserted = 0;
    const load = (async () => {
      for (let i = 0; !stop && i < 50_000; i++) {
        try {
          await writer.query("INSERT INTO public.legacy_readings VALUES ($1, now(), 1)", [3_000_000 + i]);
          inserted++;
          if (i % 20 === 0)
            await reader.query(
              "SELECT count(*) FROM public.legacy_readings WHERE recorded_at > now() - interval '1 hour'",
            );
        } catch (error) {
          errors.push((error as Error).message);
        }
      }
    })();
    // The second run starts while the first holds the table's lock: the first is held up by a row
    // it must delete, locked by another session until the second has run. (Started together, the
    // first could be done before the second asked for the lock, and both say ok.)
    const blocker = new pg.Client({ connectionString: t.url });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("SELECT 1 FROM public.legacy_readings WHERE id = 2000001 FOR UPDATE");
      const config = makeConfig(t.url, [PLAIN()], { now: NOW });
      const first = runRetention(t.db, config);
      let waiting = 0;
      for (let i = 0; i < 400 && waiting === 0; i++) {
        await new Promise((r) => setTimeout(r, 25));
        const w = await t.pool.query(`
          SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'telemetry-jobs/test'
             AND wait_event_type = 'Lock'`);
        waiting = w.rows[0].n;
      }
      expect(waiting).toBeGreaterThan(0);
      const second = await runRetention(t.db, config);
      await blocker.query("COMMIT");
      const a = await first;
      expect([a.exitCode, second.exitCode]).toEqual([0, 0]);
      expect([a.status, second.status]).toEqual(["ok", "skipped"]);
    } finally {
      await blocker.end();
      stop = true;
      await load;
      await writer.end();
      await reader.end();
    }
    expect(errors).toEqual([]);
    expect(inserted).toBeGreaterThan(0);
    expect((await counts()).expired).toBe(0);
  });
});

describe("resuming a batched delete", () => {
  it("wraps round to block 0: an old row written into freed space before the resume block is deleted too", async () => {
    // Without an index led by the time column, row deletes go by block range (with one, in time
    // order, which has no resume block).
    await t.pool.query(`
      DROP INDEX public.legacy_readings_recorded_at_idx;
      INSERT INTO public.legacy_readings
        SELECT 5000000 + g, '2026-01-20'::timestamptz + g * interval '1 second', 1 FROM generate_series(1, 30000) g;
      DELETE FROM public.legacy_readings WHERE id BETWEEN 5000001 AND 5029000;`);
    await t.pool.query("VACUUM public.legacy_readings");
    const blocks = Number(
      (
        await t.pool.query(
          `SELECT pg_relation_size('public.legacy_readings') / current_setting('block_size')::int AS b`,
        )
      ).rows[0].b,
    );
    // A late row with an old timestamp lands in space the VACUUM freed, below the resume block.
    const late = await t.pool.query(
      `INSERT INTO public.legacy_readings VALUES (6000000, '2026-01-05', 1) RETURNING (ctid::text::point)[0]::int AS block`,
    );
    const resumeAt = blocks - 1;
    expect(late.rows[0].block).toBeLessThan(resumeAt);

    const { outcome } = await applyPlainRowDelete(t.db, t.url, PLAIN(), {
      relation: { schema: "public", name: "legacy_readings" },
      now: NOW,
      before: CUTOFF,
      rows: 1001,
      startBlock: resumeAt,
    });
    expect(outcome.path).toMatch(/^batched delete by block range /);
    expect(outcome.incomplete).toBeUndefined();
    expect((await counts()).expired).toBe(0);
  });
});

describe("bad retention policies", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a negative keep", { keep: "-5 days" }, /tables\[0\]\.retention\.keep/],
    ["an unparseable keep", { keep: "ninety days" }, /tables\[0\]\.retention\.keep/],
    ["an unknown mode", { mode: "shred" }, /tables\[0\]\.retention\.mode/],
    [
      "an archive schema name with a quote",
      { mode: "archive", archiveSchema: 'cold"; drop table x; --' },
      /tables\[0\]\.retention\.archiveSchema/,
    ],
  ];
  it.each(cases)("%s: exit 2, the field named, the database unchanged", async (_name, retention, message) => {
    const before = await catalogSnapshot(t.url);
    const policy = { ...PLAIN(), retention: { ...PLAIN().retention, ...retention } };
    const { code, lines } = await runCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policy] }),
    });
    expect(code).toBe(2);
    expect(lines.map((l) => l.message).join("\n")).toMatch(message);
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });
});
