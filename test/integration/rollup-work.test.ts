// rollup-hourly's units of work through the plan executor: a first run plans the incremental step
// and every batch of the history rebuild, audits each one (kind, target, hours), and reports them
// in the run summary; a dry run lists them and changes nothing; a termination requested during the
// incremental step lets the step finish and stops before the first batch, and the next run
// resumes and converges.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Logger } from "../../shared/log/logger.ts";
import { runRollupJob } from "../../shared/rollups/job.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { captureLogger, makeConfig, runRollup } from "../support/jobs.ts";
import {
  bucketDiff,
  expectedBuckets,
  hourOf,
  insertRows,
  type RawRow,
  storedBuckets,
} from "../support/rollup-oracle.ts";

const NOW = new Date("2026-06-10T10:30:00Z");
const POLICY = {
  table: "public.telemetry_points",
  timeColumn: "ts",
  rollup: { batchPauseMs: 0, backfillBatchHours: 6 },
};
const HISTORY_FROM = new Date("2026-06-08T00:00:00Z");
// 2026-06-08T00:00 .. 2026-06-10T10:00 is final at NOW: 58 hours, in batches of 6 hours.
const BATCHES = Math.ceil(58 / 6);

let t: TestDatabase;
let rows: RawRow[];

beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query(`INSERT INTO public.devices (id) VALUES ('d1'), ('d2') ON CONFLICT DO NOTHING`);
});
afterAll(async () => {
  await t.drop();
});
beforeEach(async () => {
  await t.pool.query(`TRUNCATE public.telemetry_points, public.telemetry_rollups_hourly;
                      DELETE FROM telemetry_jobs.rollup_watermarks;`);
  rows = [];
  for (let i = 0; i < 560; i++)
    rows.push({
      device: `d${(i % 2) + 1}`,
      ts: new Date(HISTORY_FROM.getTime() + i * 6 * 60_000),
      metrics: { temp: i % 13 },
    });
  await insertRows(t.pool, rows);
});

const config = (options: { dryRun?: boolean } = {}) => makeConfig(t.url, [POLICY], { now: NOW, ...options });

/** The last run's audit rows of its units of work (the first run's adoption step has its own). */
async function lastRunActions() {
  const r = await t.pool.query(
    `SELECT a.kind, a.partition_name, a.range_from, a.range_to, a.outcome
       FROM telemetry_jobs.job_actions a
      WHERE a.run_id = (SELECT id FROM telemetry_jobs.job_runs WHERE job = 'rollup-hourly'
                         ORDER BY started_at DESC, id DESC LIMIT 1)
        AND a.kind IN ('rollup_incremental', 'rollup_rebuild_batch')
      ORDER BY a.id`,
  );
  return r.rows;
}

async function expectTruth() {
  expect(bucketDiff(expectedBuckets(rows, hourOf(NOW)), await storedBuckets(t.pool))).toEqual([]);
}

/** The logger, with the run's termination requested as the incremental step logs its result. */
function terminatingAtIncremental(log: Logger, controller: AbortController): Logger {
  return {
    ...log,
    notice: (message, fields) => {
      log.notice(message, fields);
      if (message.startsWith("incremental:")) controller.abort();
    },
    child: (fields) => terminatingAtIncremental(log.child(fields), controller),
  };
}

describe("rollup-hourly's plan", () => {
  it("a first run plans, does and audits the incremental step and every rebuild batch", async () => {
    const run = await runRollup(t.db, config());
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ incremental: 1, rebuild_batch: BATCHES });
    const planned = run.logs.filter((l) => l.message.startsWith("plan: "));
    expect(planned.map((l) => l.action)).toEqual([
      "rollup_incremental",
      ...Array(BATCHES).fill("rollup_rebuild_batch"),
    ]);
    // One line per batch would flood a first run over months of history: those are DEBUG.
    expect(planned.map((l) => l.severity)).toEqual(["INFO", ...Array(BATCHES).fill("DEBUG")]);
    const audit = await lastRunActions();
    expect(audit.map((a) => [a.kind, a.partition_name, a.outcome])).toEqual([
      ["rollup_incremental", "public.telemetry_rollups_hourly", "ok"],
      ...Array(BATCHES).fill(["rollup_rebuild_batch", "public.telemetry_rollups_hourly", "ok"]),
    ]);
    expect(audit[0].range_to).toEqual(hourOf(NOW));
    const batches = audit.slice(1);
    expect(batches[0].range_from).toEqual(HISTORY_FROM);
    for (let i = 1; i < batches.length; i++) expect(batches[i].range_from).toEqual(batches[i - 1].range_to);
    expect(batches.at(-1).range_to).toEqual(hourOf(NOW));
    expect(run.logs.some((l) => l.message === "rebuild complete")).toBe(true);
    await expectTruth();
  });

  it("a dry run lists the same units and changes nothing", async () => {
    const run = await runRollup(t.db, config({ dryRun: true }));
    expect(run.exitCode).toBe(0);
    expect(run.summary.actions).toEqual({ incremental: 1, rebuild: 1 });
    const would = run.logs.filter((l) => l.message.startsWith("would "));
    expect(would.filter((l) => l.action === "rollup_rebuild_batch")).toHaveLength(BATCHES);
    expect(would.filter((l) => l.action === "rollup_incremental")).toHaveLength(1);
    const saved = await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.rollup_watermarks");
    expect(saved.rows[0].n).toBe(0);
    expect((await storedBuckets(t.pool)).size).toBe(0);
  });

  it("termination during the incremental step: the step is saved, no batch runs, the next run converges", async () => {
    const controller = new AbortController();
    const { log, records } = captureLogger("rollup-hourly");
    const result = await runRollupJob(
      t.db,
      config(),
      terminatingAtIncremental(log, controller),
      controller.signal,
      {
        shard: { count: 1, index: 0 },
      },
    );
    expect(result.status).toBe("interrupted");
    expect(result.summary.actions).toEqual({ incremental: 1 });
    expect((await lastRunActions()).map((a) => a.kind)).toEqual(["rollup_incremental"]);
    expect(records.some((l) => /stopping the rebuild between batches/.test(l.message))).toBe(true);
    const saved = await t.pool.query(
      "SELECT final_before, backfill_next, backfill_to FROM telemetry_jobs.rollup_watermarks",
    );
    expect(saved.rows).toEqual([
      { final_before: hourOf(NOW), backfill_next: HISTORY_FROM, backfill_to: hourOf(NOW) },
    ]);

    const resumed = await runRollup(t.db, config());
    expect(resumed.exitCode).toBe(0);
    expect(resumed.summary.actions).toEqual({ incremental: 1, rebuild_batch: BATCHES });
    await expectTruth();
  });
});
