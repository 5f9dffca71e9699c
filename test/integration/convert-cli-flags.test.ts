// `migrate convert` takes the log flags every command that logs takes: --log-format text|json is
// not a usage error, the log reads as asked, and --help lists it.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";
import { createLegacyTable, legacyTable, policyFor } from "../support/legacy-tables.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

describe("migrate convert --log-format", () => {
  it("status --log-format json runs and logs JSON lines", async () => {
    const table = legacyTable("sensor_readings", "lf");
    await createLegacyTable(t.pool, table, 10, 10);
    const env = {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "lf")] }),
    };
    const run = await runCli(
      ["migrate", "convert", "status", "--table", table.qualified, "--log-format", "json"],
      env,
    );
    const messages = `${run.stderr}${run.lines.map((l) => l.message).join("\n")}`;
    expect(messages).not.toContain("Unknown option");
    expect(run.code).toBe(0);
    const status = run.lines.filter((l) => l.message.includes("no conversion of"));
    expect(status).toHaveLength(1);
  });

  it("--log-format takes only text or json", async () => {
    const run = await runCli(["migrate", "convert", "status", "--table", "lf.x", "--log-format", "xml"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [policyFor("sensor_readings", "lf")] }),
    });
    expect(run.code).toBe(2);
    expect(`${run.stderr}${run.lines.map((l) => l.message).join("\n")}`).toContain(
      "--log-format must be text or json",
    );
  });

  it("--help lists it", () => {
    const help = spawnSync(
      process.execPath,
      ["--import", "tsx", "jobs/cli.ts", "migrate", "convert", "--help"],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^ {2}--log-format text\|json$/m);
  });
});
