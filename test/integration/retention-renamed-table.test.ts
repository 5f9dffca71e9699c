// A run checks every table's policy first and then works on the tables one by one, each under its
// lock. What the check read of a table (its oid) must not be acted on later without checking that the
// name still means that table: an operator who renames the table away and creates a new one under
// the name meanwhile (a rebuild-and-swap) has left the old table out of the policy, and retention
// must not delete its rows. Paused on the first table, the run sees the second one swapped.
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runRetention } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-03-01T00:00:00Z";
const count = async (sql: string) => Number((await t.pool.query(sql)).rows[0].n);

async function makeB(): Promise<void> {
  await t.pool.query(`
    CREATE TABLE public.b (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.b_p2 PARTITION OF public.b FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
    CREATE TABLE public.b_p3 PARTITION OF public.b FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
    CREATE TABLE public.b_default PARTITION OF public.b DEFAULT;`);
}

it("a table swapped under its name during the run: the old one keeps its rows", async () => {
  await t.pool.query(`
    CREATE TABLE public.a (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.a_p1 PARTITION OF public.a FOR VALUES FROM ('2025-11-01') TO ('2025-12-01');
    CREATE TABLE public.a_p3 PARTITION OF public.a FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');`);
  await makeB();
  // Expired rows in b's DEFAULT: what a run on b deletes.
  await t.pool.query(
    "INSERT INTO public.b SELECT g, '2025-12-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 50) g",
  );
  const resume = path.join(tmpdir(), `tj-renamed-${process.pid}`);
  rmSync(resume, { force: true });
  process.env.TELEMETRY_JOBS_FAULT_PAUSE = "retention-in-drop-together";
  process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE = resume;
  try {
    const policy = (name: string) => ({
      table: `public.${name}`,
      timeColumn: "ts",
      retention: { keep: "1 month" },
    });
    const running = runRetention(t.db, makeConfig(t.url, [policy("a"), policy("b")], { now: NOW }));
    // Paused inside a's removal (detached and dropped, not committed: it holds a's lock): the swap of
    // b happens now.
    for (let i = 0; i < 400; i++) {
      const held = await count(`
        SELECT count(*) AS n FROM pg_locks
         WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND relation = 'public.a'::regclass AND mode = 'AccessExclusiveLock' AND granted`);
      if (held > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await t.pool.query(`
      ALTER TABLE public.b RENAME TO b_old;
      ALTER TABLE public.b_default RENAME TO b_old_default;
      ALTER TABLE public.b_p2 RENAME TO b_old_p2;
      ALTER TABLE public.b_p3 RENAME TO b_old_p3;`);
    await makeB();
    writeFileSync(resume, "");
    const run = await running;
    expect(run.status).toBe("ok");
  } finally {
    delete process.env.TELEMETRY_JOBS_FAULT_PAUSE;
    delete process.env.TELEMETRY_JOBS_FAULT_RESUME_FILE;
    rmSync(resume, { force: true });
  }
  expect(await count("SELECT count(*) AS n FROM public.b_old_default")).toBe(50);
  const deletes = await t.pool.query(
    "SELECT partition_name FROM telemetry_jobs.job_actions WHERE table_name = 'public.b' AND kind = 'delete_rows'",
  );
  expect(deletes.rows).toEqual([]);
}, 120_000);
