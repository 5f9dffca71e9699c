// Adoption and the other jobs on the same table. An adoption that builds indexes holds each
// partition's SHARE UPDATE EXCLUSIVE lock while CREATE INDEX CONCURRENTLY waits for older
// transactions, for as long as retryBudgetMs. partition-manager's DDL on that partition (its
// DEFAULT, when rows move or a partition is attached) would queue behind it at every retry, and
// every insert would queue behind partition-manager: so an adoption with work to do holds
// partition-manager's and retention's advisory keys for the table, as migrate convert does, and they
// leave the table to their next run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliEnv } from "../support/adoption.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli, startCli } from "../support/jobs.ts";

const NOW = "2026-11-20T10:30:00Z";
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  const up = await runCli(["migrate", "up"], { DATABASE_URL: t.url });
  expect(up.code).toBe(0);
  await t.pool.query(`
    CREATE TABLE public.readings (device_id int NOT NULL, ts timestamptz NOT NULL, value float8) PARTITION BY RANGE (ts);
    CREATE TABLE public.readings_default PARTITION OF public.readings DEFAULT;
    CREATE TABLE public.readings_p202611 PARTITION OF public.readings FOR VALUES FROM ('2026-11-01Z') TO ('2026-12-01Z');
    INSERT INTO public.readings SELECT g % 5, timestamptz '2026-11-15Z' + g * interval '1 min', g FROM generate_series(1, 5000) g;
    INSERT INTO public.readings SELECT g % 5, timestamptz '2026-12-02Z' + g * interval '1 min', g FROM generate_series(1, 500) g;`);
}, 120_000);
afterAll(async () => {
  await t?.drop();
});

describe("adoption beside partition-manager", () => {
  it("while adopt's index build waits for an old transaction, partition-manager leaves the table and no insert stalls", async () => {
    const env = cliEnv(t.url, [
      {
        table: "public.readings",
        timeColumn: "ts",
        premake: 2,
        retryBudgetMs: 20_000,
        rollup: { target: "public.readings_hourly", metrics: { columns: ["value"] } },
      },
    ]);
    // A transaction older than the build: CREATE INDEX CONCURRENTLY waits for it.
    const holder = await t.pool.connect();
    const writer = await t.pool.connect();
    let stop = false;
    const latencies: number[] = [];
    try {
      await holder.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await holder.query("SELECT 1"); // takes the snapshot, and no lock on the table
      const writing = (async () => {
        while (!stop) {
          const started = Date.now();
          await writer.query("INSERT INTO public.readings VALUES (1, '2019-06-01Z', 1)");
          latencies.push(Date.now() - started);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const adopt = startCli(["adopt"], env);
      await adopt.waitFor("readings_default_ingest_xid_idx");
      await new Promise((r) => setTimeout(r, 300));
      latencies.length = 0;
      // December's rows are in DEFAULT: partition-manager would move them (ACCESS EXCLUSIVE on DEFAULT).
      const pm = await runCli(["partition-manager", "--now", NOW], env);
      stop = true;
      await writing;
      expect(pm.code).toBe(0);
      expect(pm.lines.map((l) => l.message)).toContain(
        "another run holds the lock for this job and table; skipping it",
      );
      expect(latencies.length).toBeGreaterThan(3);
      expect(latencies.filter((ms) => ms > 500)).toEqual([]);

      await holder.query("ROLLBACK");
      const done = await adopt.done;
      expect(done.code).toBe(0);
      // Once adoption is done, partition-manager works on the table again.
      const again = await runCli(["partition-manager", "--now", NOW], env);
      expect(again.code).toBe(0);
      const moved = await t.pool.query(
        "SELECT count(*)::int AS n FROM public.readings_default WHERE ts >= '2026-12-01Z'",
      );
      expect(moved.rows[0].n).toBe(0);
    } finally {
      stop = true;
      await holder.query("ROLLBACK").catch(() => {});
      holder.release();
      writer.release();
    }
  }, 120_000);
});
