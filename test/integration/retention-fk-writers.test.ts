// A telemetry table with a foreign key to a devices table, and a writer that inserts a device and
// then a reading in one transaction (a common ingestion pattern). Retention, holding the parent,
// must not wait for the devices table (a DETACH of a child with the foreign key locks it SHARE ROW
// EXCLUSIVE): the writer, queued behind retention for the parent while holding the devices table,
// would close a deadlock and be aborted. Retention instead gives up the attempt at once, the writer
// goes on, and a later attempt removes the expired month.
import type pg from "pg";
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until a session waits for a lock of this database that `where` (on pg_locks l) matches. */
async function waitForWaiter(where: string, args: unknown[]): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const r = await t.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks l
        WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND NOT l.granted AND ${where}`,
      args,
    );
    if (r.rows[0].n > 0) return;
    await sleep(10);
  }
  throw new Error(`nobody waited: ${where}`);
}

it("a writer holding the devices table and inserting a reading is not aborted by a deadlock", async () => {
  await t.pool.query(`
    CREATE TABLE public.dev (id int PRIMARY KEY);
    INSERT INTO public.dev VALUES (1);
    CREATE TABLE public.fk (id int NOT NULL, dev int NOT NULL REFERENCES public.dev (id), ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.fk_p202511 PARTITION OF public.fk FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z');
    CREATE TABLE public.fk_p202603 PARTITION OF public.fk FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    CREATE TABLE public.fk_default PARTITION OF public.fk DEFAULT;
    INSERT INTO public.fk SELECT g, 1, '2025-11-01Z'::timestamptz + g * interval '12 hours' FROM generate_series(0, 9) g;
    INSERT INTO public.fk VALUES (1000, 1, '2026-03-05Z');`);
  const holder: pg.PoolClient = await t.pool.connect();
  const writer: pg.PoolClient = await t.pool.connect();
  try {
    const writerPid = (await writer.query("SELECT pg_backend_pid() AS p")).rows[0].p;
    // A reader holds the parent, so that retention queues for it.
    await holder.query("BEGIN; LOCK TABLE public.fk IN SHARE MODE");
    const policy = {
      table: "public.fk",
      timeColumn: "ts",
      lockTimeoutMs: 5000,
      retryBudgetMs: 30000,
      retention: { keep: "1 month", mode: "drop" },
    };
    const running = runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
    await waitForWaiter("l.relation = 'public.fk'::regclass AND l.mode = 'AccessExclusiveLock'", []);
    // The writer takes the devices table, then queues behind retention for the parent.
    await writer.query("BEGIN; INSERT INTO public.dev VALUES (2)");
    const inserted = writer
      .query("INSERT INTO public.fk VALUES (5000, 2, '2026-03-10Z')")
      .then(() => "inserted")
      .catch((e: { code?: string; message: string }) => `${e.code} ${e.message}`);
    await waitForWaiter("l.pid = $1", [writerPid]);
    await holder.query("COMMIT");
    // Longer than deadlock_timeout (1 s): a deadlock would have been found by now.
    await sleep(1_500);
    expect(await inserted).toBe("inserted");
    await writer.query("COMMIT");
    const run = await running;
    expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    const left = await t.pool.query("SELECT count(*)::int AS n FROM public.fk WHERE ts < '2026-01-01Z'");
    expect(left.rows[0].n).toBe(0);
    const kept = await t.pool.query("SELECT count(*)::int AS n FROM public.fk WHERE id = 5000");
    expect(kept.rows[0].n).toBe(1);
  } finally {
    holder.release();
    writer.release();
  }
}, 120_000);
