// An expired child may itself be partitioned (split by device, say). PostgreSQL keeps no rows and
// no storage for a partitioned table itself, only for its leaves; retention's audit row of its
// drop must say what the leaves held, not 0 rows and 0 bytes, which reads as "nothing was lost".
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

it("the drop of a sub-partitioned child is audited with its leaves' rows and bytes", async () => {
  await t.pool.query(`
    CREATE TABLE public.sa (device int NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts);
    CREATE TABLE public.sa_p202511 PARTITION OF public.sa
      FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z') PARTITION BY LIST (device);
    CREATE TABLE public.sa_p202511_d1 PARTITION OF public.sa_p202511 FOR VALUES IN (1);
    CREATE TABLE public.sa_p202511_d2 PARTITION OF public.sa_p202511 FOR VALUES IN (2);
    CREATE TABLE public.sa_p202603 PARTITION OF public.sa FOR VALUES FROM ('2026-03-01Z') TO ('2026-04-01Z');
    INSERT INTO public.sa SELECT 1 + g % 2, '2025-11-01Z'::timestamptz + g * interval '1 hour', g
      FROM generate_series(0, 599) g;
    INSERT INTO public.sa VALUES (1, '2026-03-05Z', 0);
    ANALYZE public.sa_p202511_d1, public.sa_p202511_d2;`);
  const sizes = await t.pool.query(
    `SELECT sum(pg_total_relation_size(relid))::bigint AS bytes FROM pg_partition_tree('public.sa_p202511')`,
  );
  const policy = { table: "public.sa", timeColumn: "ts", retention: { keep: "1 month" } };
  const run = await runRetention(t.db, makeConfig(t.url, [policy], { now: "2026-03-01T00:00:00Z" }));
  expect(run.exitCode).toBe(0);
  const audit = await t.pool.query(
    `SELECT partition_name, rows::int AS rows, (detail->>'bytes')::bigint AS bytes FROM telemetry_jobs.job_actions
      WHERE table_name = 'public.sa' AND kind = 'remove_partition'`,
  );
  expect(audit.rows).toEqual([
    { partition_name: "public.sa_p202511", rows: 600, bytes: sizes.rows[0].bytes },
  ]);
  expect(Number(sizes.rows[0].bytes)).toBeGreaterThan(0);
});
