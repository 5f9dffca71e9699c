// SIGTERM during `migrate convert` stops between two steps: the step under way finishes, the next
// one does not start, the command fails naming it (exit 1), and the same command again goes on
// from there.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli, startCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, policyFor } from "../support/legacy-tables.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

describe("SIGTERM between two steps of prepare", () => {
  it("finishes the step under way, does not start the next, and the next run goes on", async () => {
    const table = legacyTable("sensor_readings", "sigterm");
    await createLegacyTable(t.pool, table, 500, 60);
    const resume = join(tmpdir(), `convert-sigterm-${process.pid}`);
    if (existsSync(resume)) rmSync(resume);
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "sigterm")] }),
    };
    const args = ["migrate", "convert", "prepare", `--table=${table.qualified}`];
    const run = startCli(args, {
      ...env,
      TELEMETRY_JOBS_FAULT_PAUSE: "convert-after-prepare-step:index:sensor_readings_convert_key",
      TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
    });
    await run.waitFor("paused at fault point");
    run.child.kill("SIGTERM");
    await run.waitFor("SIGTERM received");
    writeFileSync(resume, "");
    const { code } = await run.done;
    rmSync(resume);
    expect(code).toBe(1);
    const failed = run.lines.filter((l) => l.severity === "ERROR").map((l) => l.message);
    expect(failed).toEqual([
      "failed: stopped before step index:sensor_readings_convert_oldkey (signal); run the same command again to continue",
    ]);
    const started = run.lines
      .filter((l) => l.step && !String(l.message).startsWith("done:"))
      .map((l) => l.step);
    expect(started).toEqual(["record", "index:sensor_readings_convert_key"]);
    const state = async () =>
      (
        await t.pool.query(
          `SELECT v.phase, (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = 'sigterm' AND c.relname LIKE 'sensor_readings_convert_%') AS indexes
             FROM telemetry_jobs.conversions v WHERE v.table_name = 'sigterm.sensor_readings'`,
        )
      ).rows;
    expect(await state()).toEqual([{ phase: "preparing", indexes: 1 }]);

    const again = await runCli(args, env);
    expect(again.code).toBe(0);
    expect(await state()).toEqual([{ phase: "prepared", indexes: 2 }]);
  });
});
