// A hold keeps all of a relation's rows, its expired ones included. Row deletes (the DEFAULT
// partition's expired rows here) honour a hold from the plan on, and one placed while they run
// from the next batch on: they stop, say so, and the rest stays. Both ways of deleting: by block
// range (hd, no index) and in time order (hi, an index on ts).
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention, startCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`
    CREATE TABLE public.hd (id int NOT NULL, ts timestamptz NOT NULL, pad text) PARTITION BY RANGE (ts);
    CREATE TABLE public.hd_p202603 PARTITION OF public.hd FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    CREATE TABLE public.hd_default PARTITION OF public.hd DEFAULT;
    INSERT INTO public.hd SELECT g, '2025-10-01Z'::timestamptz + g * interval '1 minute', repeat('x', 200)
      FROM generate_series(1, 60000) g;
    ANALYZE public.hd_default;
    CREATE TABLE public.hi (LIKE public.hd) PARTITION BY RANGE (ts);
    CREATE INDEX ON public.hi (ts);
    CREATE TABLE public.hi_p202603 PARTITION OF public.hi FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    CREATE TABLE public.hi_default PARTITION OF public.hi DEFAULT;
    INSERT INTO public.hi SELECT * FROM public.hd;
    ANALYZE public.hi_default;`);
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
// In time order the batches grow by half each (from 100 rows), so the ten before the pause leave
// most rows; block-range batches are bounded by their delete cost.
const POLICY = (table: string, batchSize: number) => ({
  table: `public.${table}`,
  timeColumn: "ts",
  retention: { keep: "1 month", batchSize, batchPauseMs: 0 },
});

it.each([
  ["hd", 500, /by block range/],
  ["hi", 100, /in time order/],
])(
  "%s: a hold placed while the rows are deleted stops the deletes at the next batch",
  async (table, batchSize, path) => {
    const expired = async (): Promise<number> =>
      (await t.pool.query(`SELECT count(*)::int AS n FROM public.${table}_default WHERE ts < '2026-02-01Z'`))
        .rows[0].n;
    const before = await expired();
    const resume = join(tmpdir(), `hold-row-deletes-${process.pid}`);
    if (existsSync(resume)) rmSync(resume);
    const cli = startCli(["retention", "--now", NOW], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [POLICY(table, batchSize)] }),
      TELEMETRY_JOBS_FAULT_PAUSE: "after-delete-batch", // ten batches committed, then paused
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await cli.waitFor("paused at fault point");
    const atPause = await expired();
    expect(atPause).toBeLessThan(before);
    await t.pool.query(
      "INSERT INTO telemetry_jobs.retention_holds (partition_name, hold_until, reason) VALUES ($1, '2099-01-01Z', 'audit')",
      [`public.${table}_default`],
    );
    writeFileSync(resume, "");
    const { code } = await cli.done;
    rmSync(resume);
    expect(code).toBe(0);
    expect(
      cli.lines.some((l) =>
        new RegExp(`public\\.${table}_default was held while its expired rows were being deleted`).test(
          l.message,
        ),
      ),
    ).toBe(true);
    expect(cli.lines.find((l) => l.message.startsWith("done: delete "))?.path).toMatch(path);
    // The hold was committed before the pause ended, and the next batch checks for one first: no
    // row went after the pause.
    const after = await expired();
    expect(after).toBeGreaterThan(0);
    expect(after).toBe(atPause);
    // The next run plans with the hold: no delete at all.
    const next = await runRetention(t.db, makeConfig(t.url, [POLICY(table, batchSize)], { now: NOW }));
    expect(next.exitCode).toBe(0);
    expect(await expired()).toBe(after);
    expect(
      next.logs.some((l) =>
        new RegExp(`public\\.${table}_default is held until .* rows before the cutoff are kept`).test(
          l.message,
        ),
      ),
    ).toBe(true);
  },
);
