// The CLI as an operator and Cloud Run use it: status verdicts and exit codes, migrate up/down/status,
// SIGTERM between actions, and JSON log records that Cloud Logging can parse.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionsOf } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli, startCli } from "../support/jobs.ts";

let t: TestDatabase;
let env: Record<string, string>;
beforeAll(async () => {
  t = await createTestDatabase();
  env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
      tables: [{ table: "public.telemetry_points", timeColumn: "ts", premake: 3 }],
    }),
  };
});
afterAll(async () => {
  await t.drop();
});

describe("telemetry-jobs CLI", () => {
  it("status: CRIT (exit 1) before partitions exist, OK (exit 0) after partition-manager, WARN with DEFAULT rows", async () => {
    const before = await runCli(["status", "--now", "2026-11-21T00:00:00Z"], env);
    expect(before.code).toBe(1);
    const beforeReport = before.lines[0] as any;
    expect(beforeReport.tables[0]).toMatchObject({
      table: "public.telemetry_points",
      verdict: "CRIT",
      partitions: 0,
    });
    expect(beforeReport.tables[0].reasons[0]).toMatch(/no partition for the current monthly interval/);

    const pm = await runCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], env);
    expect(pm.code).toBe(0);
    const after = await runCli(["status", "--now", "2026-11-21T00:00:00Z"], env);
    expect(after.code).toBe(0);
    const report = (after.lines[0] as any).tables[0];
    expect(report).toMatchObject({
      verdict: "OK",
      partitions: 4,
      coveredFrom: "2026-11-01T00:00:00.000Z",
      coveredTo: "2027-03-01T00:00:00.000Z",
      futureBufferIntervals: 3,
      defaultRows: 0,
    });

    await t.pool.query("INSERT INTO public.devices (id) VALUES ('d1')");
    await t.pool.query(
      "INSERT INTO public.telemetry_points (device_id, ts, metrics) VALUES ('d1', '2030-01-01', '{}')",
    );
    const warn = await runCli(["status", "--now", "2026-11-21T00:00:00Z"], env);
    expect(warn.code).toBe(0);
    expect((warn.lines[0] as any).tables[0]).toMatchObject({ verdict: "WARN", defaultRows: 1 });
  });

  it("migrate status lists every migration (telemetry_jobs', then the starter schema's) as applied; --dry-run changes nothing", async () => {
    const status = await runCli(["migrate", "status"], { DATABASE_URL: t.url });
    expect(status.code).toBe(0);
    expect(status.lines.map((l) => l.message)).toEqual([
      "applied 0001_bookkeeping",
      "applied 0002_telemetry_schema",
      "applied 0003_retention_holds",
      "applied 0004_rollups",
      "applied 0005_refused_runs",
      "applied 0006_conversions",
      "applied 0007_rollup_changes",
      "applied 0008_starter_schema_history",
      "applied 0009_hold_any_relation_name",
      "applied 0010_rollup_reads",
      "applied 0011_abandoned_runs",
      "applied starter_0001_tables",
      "applied starter_0002_ingest_xid",
      "applied starter_0003_hourly_series",
      "14 applied, 0 pending",
    ]);
    const dry = await runCli(["migrate", "down", "--dry-run"], { DATABASE_URL: t.url });
    expect(dry.code).toBe(0);
    expect(dry.lines.at(-1)?.message).toBe("dry run: would migrate down: 0011_abandoned_runs");
    const starterDry = await runCli(["migrate", "down", "--with-starter-schema", "--dry-run"], {
      DATABASE_URL: t.url,
    });
    expect(starterDry.code).toBe(0);
    expect(starterDry.lines.at(-1)?.message).toBe("dry run: would migrate down: starter_0003_hourly_series");
    const upDry = await runCli(["migrate", "up", "--with-starter-schema", "--dry-run"], {
      DATABASE_URL: t.url,
    });
    expect(upDry.lines.at(-1)?.message).toBe("dry run: would migrate up: nothing");
    const bad = await runCli(["migrate", "sideways"], { DATABASE_URL: t.url });
    expect(bad.code).toBe(2);
  });

  it("SIGTERM stops between actions (exit 1, run recorded as interrupted); the next run finishes", async () => {
    const daily = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
        tables: [
          {
            table: "public.telemetry_rollups_hourly",
            timeColumn: "bucket_ts",
            interval: "daily",
            premake: 100,
          },
        ],
      }),
    };
    const cli = startCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], daily);
    await cli.waitFor("done: create");
    cli.child.kill("SIGTERM");
    const { code } = await cli.done;
    expect(code).toBe(1);
    expect(cli.lines.some((l) => l.message === "stopping between actions: termination requested")).toBe(true);
    const summary = cli.lines.at(-1)!;
    expect(summary).toMatchObject({ event: "run_summary", status: "interrupted" });
    const created = summary.actions.create_partition as number;
    expect(created).toBeGreaterThan(0);
    expect(created).toBeLessThan(101);
    const runs = await t.pool.query(
      "SELECT status FROM telemetry_jobs.job_runs WHERE job = 'partition-manager' ORDER BY id DESC LIMIT 1",
    );
    expect(runs.rows[0].status).toBe("interrupted");

    const next = await runCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], daily);
    expect(next.code).toBe(0);
    expect(next.lines.at(-1)?.actions.create_partition).toBe(101 - created);
    expect((await partitionsOf(t.url, "public.telemetry_rollups_hourly")).length).toBe(102);
  });

  it("every stdout line is a Cloud Logging record with severity, message and the job label", async () => {
    const run = await runCli(["partition-manager", "--now", "2026-11-21T00:00:00Z", "--dry-run"], {
      ...env,
      CLOUD_RUN_EXECUTION: "partition-manager-abc12",
      CLOUD_RUN_TASK_INDEX: "0",
      CLOUD_RUN_TASK_ATTEMPT: "2",
    });
    expect(run.code).toBe(0);
    expect(run.lines.length).toBeGreaterThan(1);
    for (const line of run.lines) {
      expect(typeof line.severity).toBe("string");
      expect(typeof line.message).toBe("string");
      // Cloud Run adds the execution, task index and attempt to each entry itself.
      expect(line["logging.googleapis.com/labels"]).toEqual({ job: "partition-manager" });
    }
    expect(run.lines.at(-1)).toMatchObject({
      severity: "NOTICE",
      event: "run_summary",
      job: "partition-manager",
      dryRun: true,
    });
  });
});
