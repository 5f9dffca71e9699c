// Premaking a future partition scans the DEFAULT partition (ATTACH must prove the new range absent
// from it). That scan used to run while the job held SHARE ROW EXCLUSIVE on the parent, so every
// insert, into any partition, waited for a full scan of DEFAULT: with 3M rows there that stay by
// design (device clocks years ahead), 322 ms per attach. Ordinary inserts must never wait for it
// (the scan itself is now skipped beside a DEFAULT this large: partition-default-guard.test.ts).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

// The real clock: the executor also compares ranges with the server's clock, so a logical now in the
// past would make every range look current.
const NOW = new Date();
const DEFAULT_ROWS = 1_500_000;
const monthName = (offset: number) => {
  const d = new Date(Date.UTC(NOW.getUTCFullYear(), NOW.getUTCMonth() + offset, 1));
  return `aw_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
};

describe("premaking future partitions beside a large DEFAULT", () => {
  it("never makes an insert into an existing partition wait", async () => {
    await t.pool.query(
      "CREATE TABLE public.aw (id bigint NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)",
    );
    // This month and the next exist first: the next one may start within a day of now, and its
    // attach then makes writers wait on purpose (FUTURE_MARGIN_MS). The two made under load start
    // weeks ahead.
    const policy = { table: "public.aw", timeColumn: "ts", premake: 1 };
    expect((await runPartitionManager(t.db, makeConfig(t.url, [policy], { now: NOW }))).exitCode).toBe(0);
    // Rows far beyond any premake horizon: they stay in DEFAULT by design.
    await t.pool.query(
      `INSERT INTO public.aw SELECT g, $1::timestamptz + interval '4 years' + g * interval '1 second', g
         FROM generate_series(1, ${DEFAULT_ROWS}) g`,
      [NOW],
    );

    const writer = new pg.Client({ connectionString: t.url });
    await writer.connect();
    const writerPid = (await writer.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    let writing = true;
    let written = 0;
    const writes = (async () => {
      while (writing) {
        await writer.query("INSERT INTO public.aw VALUES ($1, $2, 1)", [-++written, NOW]);
      }
    })();
    let sampling = true;
    let samples = 0;
    let waitingSamples = 0;
    const sampler = (async () => {
      while (sampling) {
        const r = await t.pool.query(
          "SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted",
          [writerPid],
        );
        samples++;
        if (r.rows[0].n > 0) waitingSamples++;
      }
    })();
    try {
      const run = await runPartitionManager(
        t.db,
        makeConfig(t.url, [{ ...policy, premake: 3 }], { now: NOW }),
      );
      expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
    } finally {
      writing = false;
      sampling = false;
      await writes;
      await sampler;
      await writer.end();
    }
    expect((await partitionsOf(t.url, "public.aw")).map((p) => p.name)).toEqual([
      "aw_default",
      monthName(0),
      monthName(1),
      monthName(2),
      monthName(3),
    ]);
    // Two attaches (and the guard's validation, one scan of 1.5M DEFAULT rows) while the writer kept inserting.
    expect(samples).toBeGreaterThan(20);
    expect(written).toBeGreaterThan(20);
    expect(
      waitingSamples,
      `the writer was seen waiting for a lock in ${waitingSamples} of ${samples} samples`,
    ).toBe(0);
    const inDefault = await t.pool.query("SELECT count(*)::int AS n FROM ONLY public.aw_default");
    expect(inDefault.rows[0].n).toBe(DEFAULT_ROWS);
  });
});
