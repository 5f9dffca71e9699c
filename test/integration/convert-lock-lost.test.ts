// `migrate convert` holds partition-manager's, retention's and adoption's advisory locks of its table
// on a session of its own while it works. When the server ends that session (a failover,
// pg_terminate_backend), PostgreSQL releases the locks and those jobs may take the table: the
// conversion must start no further step, and fail saying why (exit 1); the same command again goes
// on from there.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADVISORY_NAMESPACE } from "../../shared/run/advisory-lock.ts";
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

it("a lost lock session: the next step is not started, the command fails saying why", async () => {
  const table = legacyTable("sensor_readings", "locklost");
  await createLegacyTable(t.pool, table, 500, 60);
  const resume = join(tmpdir(), `convert-lock-lost-${process.pid}`);
  if (existsSync(resume)) rmSync(resume);
  const env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "locklost")] }),
  };
  const args = ["migrate", "convert", "prepare", `--table=${table.qualified}`];
  const run = startCli(args, {
    ...env,
    TELEMETRY_JOBS_FAULT_PAUSE: "convert-after-prepare-step:index:sensor_readings_convert_key",
    TELEMETRY_JOBS_FAULT_RESUME_FILE: resume,
  });
  await run.waitFor("paused at fault point");
  const holders = await t.pool.query(
    `SELECT DISTINCT l.pid FROM pg_locks l
      WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.locktype = 'advisory' AND l.granted AND l.classid::int = $1`,
    [ADVISORY_NAMESPACE],
  );
  expect(holders.rows).toHaveLength(1);
  await t.pool.query("SELECT pg_terminate_backend($1)", [holders.rows[0].pid]);
  // The loss reaches the process (the client's 'error' event) before it goes on.
  await run.waitFor("database connection failed");
  writeFileSync(resume, "");
  const { code } = await run.done;
  rmSync(resume);
  const shown = `${run.stderr}\n${run.lines.map((l) => JSON.stringify(l)).join("\n")}`;
  expect(code, shown).toBe(1);
  expect(shown).toMatch(
    /the database session holding the locks .* was lost while the work ran \(terminating connection/,
  );
  const started = run.lines
    .filter((l) => l.step && !String(l.message).startsWith("done:"))
    .map((l) => l.step);
  expect(started).toEqual(["record", "index:sensor_readings_convert_key"]);

  const again = await runCli(args, env);
  expect(again.code).toBe(0);
  const phase = await t.pool.query(
    "SELECT phase FROM telemetry_jobs.conversions WHERE table_name = 'locklost.sensor_readings'",
  );
  expect(phase.rows).toEqual([{ phase: "prepared" }]);
}, 120_000);
