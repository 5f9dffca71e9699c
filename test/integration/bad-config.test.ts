// Bad policies exit 2 with the field named, before anything in the database changes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalogSnapshot } from "../support/catalog-snapshot.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await t.pool.query("CREATE TABLE public.plain_readings (id int, recorded_at timestamptz)");
});
afterAll(async () => {
  await t.drop();
});

const GOOD = { table: "public.telemetry_points", timeColumn: "ts", interval: "monthly", premake: 3 };

const cases: [string, Record<string, unknown>, RegExp][] = [
  ["unknown interval", { ...GOOD, interval: "fortnightly" }, /tables\[1\]\.interval/],
  ["premake -1", { ...GOOD, premake: -1 }, /tables\[1\]\.premake: .*>=\s*0/],
  [
    "a table name containing a quote",
    { ...GOOD, table: 'public.tele"metry' },
    /tables\[1\]\.table: .*quotes/,
  ],
  [
    "a table name containing a semicolon",
    { ...GOOD, table: "telemetry_points;drop table devices" },
    /tables\[1\]\.table/,
  ],
  [
    "a missing time column",
    { ...GOOD, timeColumn: "recorded_at" },
    /tables\[1\]\.timeColumn: column "recorded_at" does not exist/,
  ],
  [
    "a non-timestamp time column",
    { ...GOOD, timeColumn: "device_id" },
    /tables\[1\]\.timeColumn: .*is text, not timestamptz/,
  ],
  [
    "a table that does not exist",
    { ...GOOD, table: "public.nope" },
    /tables\[1\]\.table: public\.nope does not exist/,
  ],
  [
    "a table that is not partitioned",
    { ...GOOD, table: "public.plain_readings", timeColumn: "recorded_at" },
    /tables\[1\]\.table: public\.plain_readings is not a partitioned table/,
  ],
];

describe("bad policies", () => {
  it.each(cases)("%s: exit 2, the field named, the database unchanged", async (_name, bad, message) => {
    // A valid table first: validation must refuse the whole run before touching it.
    const rollups = { table: "public.telemetry_rollups_hourly", timeColumn: "bucket_ts" };
    const before = await catalogSnapshot(t.url);
    const { code, lines, stderr } = await runCli(["partition-manager", "--now", "2026-11-21T00:00:00Z"], {
      DATABASE_URL: t.url,
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [rollups, bad] }),
    });
    const text = lines.map((l) => l.message).join("\n") + stderr;
    expect(text).toMatch(message);
    expect(code).toBe(2);
    expect(await catalogSnapshot(t.url)).toEqual(before);
    const runs = await t.pool.query("SELECT count(*)::int AS n FROM telemetry_jobs.job_runs");
    expect(runs.rows[0].n).toBe(0);
  });

  it("an unknown flag and a bad --now are usage errors (exit 2)", async () => {
    const env = { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [GOOD] }) };
    const flag = await runCli(["partition-manager", "--premake", "4"], env);
    expect(flag.code).toBe(2);
    expect(flag.lines.map((l) => l.message).join("\n")).toMatch(/Unknown option '--premake'/);
    const now = await runCli(["partition-manager", "--now", "2026-11-21 10:00"], env);
    expect(now.code).toBe(2);
    expect(now.lines.map((l) => l.message).join("\n")).toMatch(/--now .*ISO-8601/);
  });

  it("--max-rescue-rows without --table, or not a number: exit 2 naming the fix, nothing run", async () => {
    const env = { DATABASE_URL: t.url, TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [GOOD] }) };
    const before = await catalogSnapshot(t.url);
    const everyTable = await runCli(["partition-manager", "--max-rescue-rows", "100000"], env);
    expect(everyTable.code).toBe(2);
    expect(everyTable.lines.map((l) => l.message).join("\n")).toMatch(/--max-rescue-rows needs --table/);
    const words = await runCli(
      ["partition-manager", "--table", GOOD.table, "--max-rescue-rows", "lots"],
      env,
    );
    expect(words.code).toBe(2);
    expect(words.lines.map((l) => l.message).join("\n")).toMatch(/--max-rescue-rows must be a whole number/);
    expect(await catalogSnapshot(t.url)).toEqual(before);
  });

  it("no database configured: exit 2 naming the variables to set", async () => {
    const { code, lines } = await runCli(["partition-manager"], {
      DATABASE_URL: "",
      TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({ tables: [GOOD] }),
    });
    expect(code).toBe(2);
    expect(lines.map((l) => l.message).join("\n")).toMatch(/DATABASE_URL: no database configured/);
  });
});
