// rollup-hourly and a writer whose transaction id is exactly the xmax of the snapshot a run saves:
// the writer takes its xid after the run's snapshot and before the run's first write, then
// commits a late row into a final hour. The run cannot see the row; the next run must count it
// ("new" is ingest_xid >= the saved xmax, not >).
//
// The order is made with locks, not with timing. A third session holds ACCESS EXCLUSIVE on the
// May partition, which the run's scan for new rows reads and the writer's June row does not need.
// The run's incremental transaction takes its snapshot first, then blocks planning that scan,
// before it writes anything (its first write, the temp table of touched buckets, is created by
// that statement). Only then does the writer insert. (The locker itself has an xid, taken with
// its ACCESS EXCLUSIVE lock, before the run started: it is in the snapshot's in-progress list and
// writes nothing.) The test runs on a server of its own: xids are cluster-wide, and on the shared
// server other test files would take xids in between.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSnapshot } from "../../shared/rollups/watermark.ts";
import { makeConfig, runPartitionManager, runRollup } from "../support/jobs.ts";
import { type PrivateDatabase, startPrivateDatabase } from "../support/private-server.ts";
import {
  bucketDiff,
  bucketKey,
  expectedBuckets,
  hourOf,
  insertRows,
  type RawRow,
  storedBuckets,
} from "../support/rollup-oracle.ts";

let t: PrivateDatabase;
beforeAll(async () => {
  t = await startPrivateDatabase();
  await t.pool.query("INSERT INTO public.devices (id) VALUES ('d1'), ('d2')");
  // Monthly partitions May .. August 2026.
  const pm = await runPartitionManager(
    t.db,
    makeConfig(t.url, [{ table: "public.telemetry_points", timeColumn: "ts" }], {
      now: "2026-05-15T00:00:00Z",
    }),
  );
  expect(pm.exitCode).toBe(0);
});
afterAll(async () => {
  await t?.stop();
});

const NOW = new Date("2026-06-01T10:30:00Z"); // hours before 10:00 are final
const POLICY = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const config = () => makeConfig(t.url, [POLICY], { now: NOW });

function expectOk(run: { exitCode: number; logs: { severity?: string }[] }) {
  const errors = run.logs.filter((l) => l.severity === "ERROR");
  expect(run.exitCode, JSON.stringify(errors)).toBe(0);
}

/** The run's backend once it waits for a lock in the statement that creates rollup_touched. */
async function waitForBlockedRun(timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await t.pool.query<{ pid: number; backend_xid: string | null; backend_xmin: string | null }>(
      `SELECT pid, backend_xid::text, backend_xmin::text FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'
          AND query LIKE '%CREATE TEMP TABLE rollup_touched%'`,
    );
    if (r.rows[0]) return r.rows[0];
    if (Date.now() > deadline) {
      const all = await t.pool.query(
        "SELECT pid, state, wait_event_type, left(query, 100) AS query FROM pg_stat_activity WHERE datname = current_database()",
      );
      throw new Error(`the run never blocked creating rollup_touched; sessions: ${JSON.stringify(all.rows)}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("a writer that takes its xid between the run's snapshot and the run's first write", () => {
  it("commits a late row into a final hour after the run's snapshot: that run leaves it, the next run counts it", async () => {
    const rows: RawRow[] = [];
    for (
      let h = -3;
      h < 10;
      h++ // May 31 21:00 .. June 1 09:00
    )
      for (const device of ["d1", "d2"])
        rows.push({
          device,
          ts: new Date(Date.UTC(2026, 5, 1, h, 10)),
          metrics: { temp: 20 + h, hum: 50 - h },
        });
    await insertRows(t.pool, rows);
    expectOk(await runRollup(t.db, config())); // first run: rolls up all history
    const finalBefore = hourOf(NOW);
    expect(bucketDiff(expectedBuckets(rows, finalBefore), await storedBuckets(t.pool))).toEqual([]);

    const late: RawRow = { device: "d1", ts: new Date("2026-06-01T03:45:00Z"), metrics: { temp: 1000 } };
    const locker = new pg.Client({ connectionString: t.url });
    const writer = new pg.Client({ connectionString: t.url, options: "-c TimeZone=UTC -c lock_timeout=5s" });
    await locker.connect();
    await writer.connect();
    let writerXid: string;
    try {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE public.telemetry_points_p202605 IN ACCESS EXCLUSIVE MODE");
      const running = runRollup(t.db, config());
      const blocked = await waitForBlockedRun();
      // The run has its snapshot and no xid yet: nothing of it is written.
      expect(blocked.backend_xmin).not.toBeNull();
      expect(blocked.backend_xid).toBeNull();
      await writer.query("BEGIN");
      await insertRows(writer, [late]);
      writerXid = (await writer.query("SELECT pg_current_xact_id()::text AS x")).rows[0].x;
      await writer.query("COMMIT");
      await locker.query("COMMIT");
      expectOk(await running);
    } finally {
      await writer.end();
      await locker.end();
    }
    const stamped = await t.pool.query(
      "SELECT ingest_xid::text AS x FROM public.telemetry_points WHERE ts = '2026-06-01T03:45:00Z'",
    );
    expect(stamped.rows).toEqual([{ x: writerXid }]);

    // That run did not see the row: the bucket is unchanged ...
    const afterBlocked = await storedBuckets(t.pool);
    expect(afterBlocked.get(bucketKey("d1", "temp", new Date("2026-06-01T03:00:00Z")))?.count).toBe(1);
    // ... and the snapshot it saved has the writer's xid as its xmax (not in its in-progress list).
    const saved = await t.pool.query("SELECT seen::text AS seen FROM telemetry_jobs.rollup_watermarks");
    const seen = parseSnapshot(saved.rows[0].seen);
    expect({ xmax: seen.xmax, inProgress: seen.xip.includes(writerXid) }).toEqual({
      xmax: writerXid,
      inProgress: false,
    });

    const next = await runRollup(t.db, config());
    expectOk(next);
    expect(bucketDiff(expectedBuckets([...rows, late], finalBefore), await storedBuckets(t.pool))).toEqual(
      [],
    );
    expect(next.summary.health["public.telemetry_points"]).toMatchObject({ lateRows: 1 });
  });
});
