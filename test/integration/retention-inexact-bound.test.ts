// A partition bound may carry microseconds (TO ('2026-02-01 00:00:00.0005+00')), which a JS Date
// cannot hold: it reads as 2026-02-01 00:00:00.000. Judged by that, the partition ends at the
// cutoff and is expired, though it holds the instant 2026-02-01 00:00:00 itself, which the cutoff
// keeps. Retention judges such a bound by the next millisecond instead, so a row at the cutoff is
// never dropped; once the cutoff has passed the real bound, the partition is removed as any other.
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

const count = async (sql: string): Promise<number> => (await t.pool.query(sql)).rows[0].n;

it("a row at the cutoff in a partition whose bound has microseconds is kept, then removed in time", async () => {
  await t.pool.query(`
    CREATE TABLE public.ib (id int NOT NULL, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.ib_p202512 PARTITION OF public.ib FOR VALUES FROM ('2025-12-01Z') TO ('2026-01-01Z');
    CREATE TABLE public.ib_p202601 PARTITION OF public.ib
      FOR VALUES FROM ('2026-01-01Z') TO ('2026-02-01 00:00:00.0005+00');
    CREATE TABLE public.ib_p202602 PARTITION OF public.ib
      FOR VALUES FROM ('2026-02-01 00:00:00.0005+00') TO ('2026-03-01Z');
    CREATE TABLE public.ib_p202603 PARTITION OF public.ib FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.ib VALUES (1, '2025-12-15Z'), (2, '2026-01-15Z'), (3, '2026-02-01 00:00:00Z'),
                                 (4, '2026-02-15Z'), (5, '2026-03-15Z');`);
  const policy = { table: "public.ib", timeColumn: "ts", retention: { keep: "1 month" } };
  // Cutoff 2026-02-01 00:00:00: December goes; January holds row 3, at the cutoff, and stays.
  const first = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  expect(first.exitCode).toBe(0);
  expect((await t.pool.query("SELECT id FROM public.ib ORDER BY id")).rows.map((r) => r.id)).toEqual([
    2, 3, 4, 5,
  ]);
  // Cutoff 2026-03-01: January and February are expired; their removal passes the checks made
  // under the lock, which read the bound the same way.
  const later = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-04-01T00:00:00Z" }));
  expect(later.exitCode).toBe(0);
  expect((await t.pool.query("SELECT id FROM public.ib ORDER BY id")).rows.map((r) => r.id)).toEqual([5]);
  expect(
    await count("SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.ib'::regclass"),
  ).toBe(1);
});
