// The records log-based metrics are made of: every table_health and run_summary record says whether
// the run was a dry run (dryRun) and whether it planned for another instant than now (clockShifted,
// --now), so the metrics can leave such runs out; partition-manager's health says how far the future
// buffer is short of the table's own premake (futureBufferShortfall), which the buffer alert watches.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { type LogRecord, runCli } from "../support/jobs.ts";

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase();
  env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
      tables: [{ table: "public.telemetry_points", timeColumn: "ts", premake: 2 }],
    }),
  };
});
afterAll(async () => {
  await t?.drop();
});

const metricRecords = (lines: LogRecord[]) =>
  lines.filter((l) => l.event === "table_health" || l.event === "run_summary");

describe("health and summary records", () => {
  it("a dry run with --now far ahead: every record says so, and the shortfall is the whole premake", async () => {
    const run = await runCli(["partition-manager", "--dry-run", "--now", "2030-06-15T00:00:00Z"], env);
    expect(run.code).toBe(0);
    const records = metricRecords(run.lines);
    expect(records.map((r) => r.event).sort()).toEqual(["run_summary", "table_health"]);
    for (const r of records) expect(r).toMatchObject({ dryRun: true, clockShifted: true });
    const health = records.find((r) => r.event === "table_health")!;
    expect(health).toMatchObject({ futureBufferIntervals: 0, futureBufferShortfall: 2 });
  });

  it("a real run on the clock: dryRun and clockShifted false, no shortfall once the partitions exist", async () => {
    const run = await runCli(["partition-manager"], env);
    expect(run.code).toBe(0);
    const records = metricRecords(run.lines);
    expect(records).toHaveLength(2);
    for (const r of records) expect(r).toMatchObject({ dryRun: false, clockShifted: false });
    expect(records.find((r) => r.event === "table_health")).toMatchObject({
      futureBufferIntervals: 2,
      futureBufferShortfall: 0,
    });
  });
});
