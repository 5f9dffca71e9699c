// What an operator reads on a terminal: a partition-manager run with a rescue, as the CLI prints it
// with --log-format text. The plan once as a table (ranges in the interval's precision), one
// progress line per action, the health and the summary; nothing said twice. Times of day, durations
// and the run id vary from run to run and are masked; everything else is the snapshot.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliEnv } from "../support/adoption.ts";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

const POINTS = { table: "public.telemetry_points", timeColumn: "ts", interval: "monthly", premake: 1 };

function cliText(
  args: string[],
  policy: Record<string, unknown> = POINTS,
): { code: number | null; stdout: string; stderr: string } {
  const run = spawnSync(
    process.execPath,
    ["--import", "tsx", "jobs/cli.ts", ...args, "--log-format", "text"],
    {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, ...cliEnv(t.url, [policy]), TZ: "America/St_Johns", LANG: "de_DE.UTF-8" },
    },
  );
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

const mask = (text: string) =>
  text.split("\n").map((line) =>
    line
      .replace(/^\d\d:\d\d:\d\d /, "")
      .replace(/\d+\.\d s\b/g, "#.# s")
      .replace(/ run \d+,/, " run #,")
      // Sizes differ between PostgreSQL versions, and the row estimate with autovacuum's timing.
      .replace(/\d+\.\d [KM]iB/g, "# MiB")
      .replace(/~[\d,]+( rows| {2})/, "~#$1"),
  );

describe("text output of a partition-manager run", () => {
  it("a rescue: the plan as a table, a progress line per action, the health, the summary", async () => {
    await t.pool.query("INSERT INTO public.devices (id) VALUES ('dev-1') ON CONFLICT DO NOTHING");
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics)
       SELECT 'dev-1', ts, '{"temp_c": 20}'::jsonb
         FROM generate_series('2026-09-03'::timestamptz, '2026-10-28', '1 hour') AS ts`,
    );
    const run = cliText(["partition-manager", "--now", "2026-11-21T00:00:00Z"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(mask(run.stdout)).toEqual([
      "partition-manager run #, now 2026-11-21T00:00:00.000Z: 1 table",
      "",
      "public.telemetry_points",
      "  plan: 4 actions",
      "             partition                 range               rows  action",
      "             telemetry_points_p202611  2026-11 .. 2026-12        create (premake)",
      "             telemetry_points_p202612  2026-12 .. 2027-01        create (premake)",
      "             telemetry_points_p202610  2026-10 .. 2026-11   649  create (rescue)",
      "             telemetry_points_p202609  2026-09 .. 2026-10   672  create (rescue)",
      "  [1/4] telemetry_points_p202611  created  #.# s",
      "  [2/4] telemetry_points_p202612  created  #.# s",
      "  [3/4] telemetry_points_p202610  649 rows moved  #.# s",
      "  [4/4] telemetry_points_p202609  672 rows moved  #.# s",
      "  health  OK  covered 2026-09 .. 2027-01, partitions 4, future buffer 1, rows in DEFAULT 0, missing 0, # MiB, ~# rows",
      "partition-manager ok  in #.# s  actions: create_partition 4  tables: public.telemetry_points ok",
      "",
    ]);
  });

  it("retention after it: the removal and the row deletes as table rows and progress lines", async () => {
    const policy = { ...POINTS, retention: { keep: "45 days" } };
    const run = cliText(["retention", "--now", "2026-11-21T00:00:00Z"], policy);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    // The row estimate (masked) sets the width of its column, and it varies with the server's
    // statistics: columns compare with their gaps collapsed (alignment has its unit test).
    const collapsed = mask(run.stdout).map((l) => l.replace(/(\S) {2,}/g, "$1  "));
    expect(collapsed).toEqual([
      "retention run #, now 2026-11-21T00:00:00.000Z: 1 table",
      "",
      "public.telemetry_points",
      "  cutoff 2026-10-07T00:00:00.000Z (keep 45 days, mode drop)",
      "  plan: 1 action",
      "             partition  range  rows  action",
      "             public.telemetry_points_p202609  2026-09 .. 2026-10  ~#  drop, # MiB",
      "  [1/1] public.telemetry_points_p202609  dropped, # MiB freed  #.# s",
      "  health  cutoff 2026-10-07T00:00:00.000Z, # MiB freed, 0 rows deleted",
      "retention ok  in #.# s  actions: remove_partition 1  tables: public.telemetry_points ok",
      "",
    ]);
  });

  it("a refused rescue: its reason once, as an ERROR, and the table's end points at it", async () => {
    await t.pool.query(
      `INSERT INTO public.telemetry_points (device_id, ts, metrics)
       SELECT 'dev-1', ts, '{"temp_c": 20}'::jsonb
         FROM generate_series('2027-01-05'::timestamptz, '2027-01-06', '1 hour') AS ts`,
    );
    const policy = { ...POINTS, premake: 2, maxRescueRows: 10 };
    const run = cliText(["partition-manager", "--now", "2026-12-21T00:00:00Z"], policy);
    expect(run.code).toBe(2);
    const lines = mask(run.stdout);
    const reason = lines.filter((l) => l.includes("not creating telemetry_points_p202701"));
    // The finding, and the health reason (the health record lists what made the table CRIT).
    expect(reason.map((l) => l.trim().split(" ")[0])).toEqual(["ERROR", "CRIT:"]);
    expect(lines).toContain("  ERROR table refused (see above)");
    expect(lines).toContain("  [1/1] telemetry_points_p202702  created  #.# s");
  });
});
