// rollup-hourly and a DEFAULT rescue by partition-manager in three orders: rollup first, rescue
// first (each started at a random offset from the other), and a rollup rebuild of the very month the
// rescue has moved but not yet committed (a real CLI run held at its fault point). Whatever the
// order, once both have run (and rollup-hourly once more), every final bucket equals a GROUP BY of
// the raw rows. The statement-level loss itself (a reader planned before the move seeing no row) is
// reproduced deterministically in rescue-visibility.test.ts; this file checks the job pair end to
// end against the oracle.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { makeConfig, runPartitionManager, runRollup, startCli } from "../support/jobs.ts";
import {
  bucketDiff,
  expectedBuckets,
  hourOf,
  insertRows,
  type RawRow,
  storedBuckets,
} from "../support/rollup-oracle.ts";

let t: TestDatabase;
const NOW = new Date("2026-06-10T00:00:00Z");
const DEVICES = ["d1", "d2", "d3"];
const ROLLUP = { table: "public.telemetry_points", timeColumn: "ts", rollup: { batchPauseMs: 0 } };
const PARTITIONS = { table: "public.telemetry_points", timeColumn: "ts" };

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query("INSERT INTO public.devices (id) SELECT unnest($1::text[])", [DEVICES]);
  const pm = await runPartitionManager(t.db, makeConfig(t.url, [PARTITIONS], { now: NOW }));
  expect(pm.exitCode).toBe(0);
});
afterAll(async () => {
  await t.drop();
});

function expectOk(run: { exitCode: number; logs: { severity?: string }[] }) {
  expect(run.exitCode, JSON.stringify(run.logs.filter((l) => l.severity === "ERROR"))).toBe(0);
}

/** Resolves once some session waits for the one holding ACCESS EXCLUSIVE on DEFAULT (the rescue). */
async function someoneWaitsForTheRescue(): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    const r = await t.pool.query(
      `SELECT count(*)::int AS n
         FROM pg_locks l, pg_stat_activity a
        WHERE l.relation = 'public.telemetry_points_default'::regclass AND l.mode = 'AccessExclusiveLock'
          AND l.granted AND l.pid = ANY(pg_blocking_pids(a.pid))`,
    );
    if (r.rows[0].n > 0) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error("no session ever waited for the paused rescue");
}

/** `count` rows of one month (a month with no partition yet, so they land in DEFAULT). */
function monthRows(year: number, month: number, count: number): RawRow[] {
  const start = Date.UTC(year, month, 1);
  return Array.from({ length: count }, (_, i) => ({
    device: DEVICES[i % DEVICES.length]!,
    ts: new Date(start + ((i * 7919) % (27 * 24 * 60)) * 60_000),
    metrics: { temp: (i % 97) - 40, volt: i % 5 },
  }));
}

describe("rollup-hourly and a DEFAULT rescue at random offsets", () => {
  it("property: every final bucket equals the GROUP BY of the raw rows", async () => {
    const all: RawRow[] = [];
    // The first run rolls up the (empty) history and saves its snapshot: from then on each month's
    // rows are late rows for the incremental step, read while the rescue may be moving them.
    expectOk(await runRollup(t.db, makeConfig(t.url, [ROLLUP], { now: NOW })));
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("rollup first", "rollup while the rescue holds DEFAULT", "rescue first"),
        fc.integer({ min: 0, max: 250 }),
        async (order, delayMs) => {
          // Each round a month further back, with no partition yet: partition-manager rescues it.
          round++;
          const rows = monthRows(2026, 4 - round, 10_000);
          await insertRows(t.pool, rows);
          all.push(...rows);
          const rollup = () => runRollup(t.db, makeConfig(t.url, [ROLLUP], { now: NOW }));
          const rescue = () => runPartitionManager(t.db, makeConfig(t.url, [PARTITIONS], { now: NOW }));
          const pause = () => new Promise((r) => setTimeout(r, delayMs));
          let runs: Promise<{ exitCode: number; logs: { severity?: string }[] }>[];
          if (order === "rollup first") runs = [rollup(), pause().then(rescue)];
          else if (order === "rescue first") runs = [rescue(), pause().then(rollup)];
          else {
            // The window that lost rows: a rescue that has moved the rows but not yet committed (a
            // real CLI run held at its fault point), and a rollup run that meets its locks; then
            // the rescue commits.
            const resumeFile = join(mkdtempSync(join(tmpdir(), "tj-resume-")), "go");
            const cli = startCli(["partition-manager", "--now", NOW.toISOString()], {
              DATABASE_URL: t.url,
              TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [PARTITIONS] }),
              TELEMETRY_JOBS_FAULT_PAUSE: "after-move-rows",
              TELEMETRY_JOBS_FAULT_RESUME_FILE: resumeFile,
            });
            await cli.waitFor("paused at fault point");
            // A rebuild of that month (--from/--to) reads it by time: planned while only DEFAULT
            // covers the month, it is the statement that used to find the hour empty.
            const month = {
              from: new Date(Date.UTC(2026, 4 - round, 1)),
              to: new Date(Date.UTC(2026, 5 - round, 1)),
            };
            const rolling = runRollup(t.db, makeConfig(t.url, [ROLLUP], { now: NOW }), { rebuild: month });
            await someoneWaitsForTheRescue();
            writeFileSync(resumeFile, "");
            const exit = await cli.done;
            expect(exit.code, cli.lines.map((l) => l.message).join("\n")).toBe(0);
            runs = [rolling];
          }
          for (const run of runs) expectOk(await run);
          // Nothing is left in DEFAULT, and one more run settles whatever was in flight.
          const left = await t.pool.query(
            "SELECT count(*)::int AS n FROM ONLY public.telemetry_points_default",
          );
          expect(left.rows[0].n).toBe(0);
          expectOk(await rollup());
          expect(bucketDiff(expectedBuckets(all, hourOf(NOW)), await storedBuckets(t.pool))).toEqual([]);
        },
      ),
      { numRuns: 4, seed: 1108 },
    );
  }, 180_000);
});
