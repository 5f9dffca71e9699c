// A DEFAULT rescue moves rows out of DEFAULT into a new partition and attaches it in one
// transaction. A READ COMMITTED statement that was planned while only DEFAULT covered the range,
// and then waited for DEFAULT's lock, used to run after the rescue committed with its old partition
// list: the rows had left DEFAULT and the new partition was not in its plan, so it saw none of them
// (an application query returned 0 rows instead of 50; a rollup batch wrote an empty hour for good).
// No statement may miss a moved row, whenever it starts.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const NOW = "2026-11-21T00:00:00Z";
const ROWS = 300_000;

interface LockRow {
  pid: number;
  relname: string;
  mode: string;
  granted: boolean;
}

async function locksOn(relnames: string[]): Promise<LockRow[]> {
  const r = await t.pool.query<LockRow>(
    `SELECT l.pid, c.relname::text AS relname, l.mode, l.granted
       FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = ANY($1) AND l.pid <> pg_backend_pid()`,
    [relnames],
  );
  return r.rows;
}

describe("a statement that meets a DEFAULT rescue", () => {
  it("counts every moved row, whether it started before, during or after the move", async () => {
    await t.pool.query(
      "CREATE TABLE public.rv (id int NOT NULL, ts timestamptz NOT NULL, v float8) PARTITION BY RANGE (ts)",
    );
    await t.pool.query("CREATE INDEX ON public.rv (ts)");
    await t.pool.query("CREATE TABLE public.rv_default PARTITION OF public.rv DEFAULT");
    // November 2026 has no partition yet: all its rows sit in DEFAULT.
    await t.pool.query(
      `INSERT INTO public.rv SELECT g, '2026-11-01Z'::timestamptz + (g % 1728000) * interval '1 second', g
         FROM generate_series(1, ${ROWS}) g`,
    );
    await t.pool.query("ANALYZE public.rv");

    // A deliberate rescue: ROWS is above the default maxRescueRows, which would refuse it.
    const job = runPartitionManager(
      t.db,
      makeConfig(t.url, [{ table: "public.rv", timeColumn: "ts", premake: 0, maxRescueRows: ROWS }], {
        now: NOW,
      }),
    );

    // Wait until the rescue holds DEFAULT and the parent (it is moving the rows now), then start
    // a reader of November on its own connection.
    let holder: number | undefined;
    for (let i = 0; i < 2000 && holder === undefined; i++) {
      const locks = await locksOn(["rv", "rv_default"]);
      const onDefault = locks.find(
        (l) => l.relname === "rv_default" && l.granted && l.mode === "AccessExclusiveLock",
      );
      const onParent = locks.find(
        (l) => l.relname === "rv" && l.granted && l.pid === onDefault?.pid && l.mode !== "AccessShareLock",
      );
      if (onDefault && onParent) holder = onDefault.pid;
      else await new Promise((r) => setTimeout(r, 2));
    }
    expect(holder, "the rescue was never seen holding DEFAULT and the parent").toBeDefined();

    const reader = new pg.Client({ connectionString: t.url });
    await reader.connect();
    try {
      const readerPid = (await reader.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      const counted = reader.query(
        "SELECT count(*)::int AS n FROM public.rv WHERE ts >= '2026-11-01Z' AND ts < '2026-12-01Z'",
      );
      // The reader must really have waited for the rescue (otherwise this test proves nothing).
      let waited = false;
      for (let i = 0; i < 500 && !waited; i++) {
        waited = (await locksOn(["rv", "rv_default"])).some((l) => l.pid === readerPid && !l.granted);
        if (!waited) await new Promise((r) => setTimeout(r, 2));
      }
      const run = await job;
      expect(run.exitCode).toBe(0);
      expect(waited, "the reader never waited for the rescue's locks").toBe(true);
      expect((await counted).rows[0].n).toBe(ROWS);
    } finally {
      await reader.end();
    }
    const afterwards = await t.pool.query(
      "SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM public.rv GROUP BY 1 ORDER BY 1",
    );
    expect(afterwards.rows).toEqual([{ part: "rv_p202611", n: ROWS }]);
  });
});
