// `hold` protects only what it names: a partition of a table in the policy, until an instant in the
// future. A typo (or a partition of an unmanaged table, or a date in the past) would be stored as a
// hold on nothing while retention drops the partition the operator meant to keep: those are refused
// with exit 2, nothing written, the closest partition named. unhold takes any name.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.ts";
import { runCli } from "../support/jobs.ts";

let t: TestDatabase;
let env: Record<string, string>;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
  await t.pool.query(`
    CREATE TABLE public.readings (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
    CREATE TABLE public.readings_p202501 PARTITION OF public.readings FOR VALUES FROM ('2025-01-01Z') TO ('2025-02-01Z');
    CREATE TABLE public."Readings Feb" PARTITION OF public.readings FOR VALUES FROM ('2025-02-01Z') TO ('2025-03-01Z');
    CREATE TABLE public.other (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
    CREATE TABLE public.other_p202501 PARTITION OF public.other FOR VALUES FROM ('2025-01-01Z') TO ('2025-02-01Z');`);
  env = {
    DATABASE_URL: t.url,
    TELEMETRY_JOBS_CONFIG_JSON: JSON.stringify({
      tables: [{ table: "public.readings", timeColumn: "ts", retention: { keep: "1 year" } }],
    }),
  };
  expect((await runCli(["migrate", "up"], env)).code).toBe(0);
});
afterAll(async () => {
  await t?.drop();
});

const FUTURE = "2099-01-01T00:00:00Z";
const holdCount = async () =>
  Number((await t.pool.query("SELECT count(*) AS n FROM telemetry_jobs.retention_holds")).rows[0].n);
const text = (run: { lines: { message: string }[]; stderr: string }) =>
  `${run.lines.map((l) => l.message).join("\n")}\n${run.stderr}`;

describe("hold", () => {
  it("a typo: exit 2, nothing written, the closest partition named", async () => {
    const run = await runCli(["hold", "public.readings_p20251", "--until", FUTURE, "--reason", "audit"], env);
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(
      /public\.readings_p20251 is not a partition of any table in the policy; did you mean public\.readings_p202501\?/,
    );
    expect(await holdCount()).toBe(0);
  });

  it("a partition of a table the policy does not manage: exit 2, nothing written", async () => {
    const run = await runCli(["hold", "public.other_p202501", "--until", FUTURE, "--reason", "audit"], env);
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(/is a partition of public\.other, which is not in the policy/);
    expect(await holdCount()).toBe(0);
  });

  it("an --until in the past: exit 2 before connecting, nothing written", async () => {
    const run = await runCli(
      ["hold", "public.readings_p202501", "--until", "2020-01-01T00:00:00Z", "--reason", "audit"],
      env,
    );
    expect(run.code).toBe(2);
    expect(text(run)).toMatch(/--until 2020-01-01T00:00:00.000Z is not in the future/);
    expect(await holdCount()).toBe(0);
  });

  it("a partition of a managed table, quoted as SQL quotes it: held; unhold takes any name", async () => {
    const held = await runCli(["hold", 'public."Readings Feb"', "--until", FUTURE, "--reason", "audit"], env);
    expect(held.code, text(held)).toBe(0);
    const rows = await t.pool.query("SELECT partition_name FROM telemetry_jobs.retention_holds");
    expect(rows.rows).toEqual([{ partition_name: 'public."Readings Feb"' }]);
    expect((await runCli(["unhold", "public.no_such_thing"], env)).code).toBe(0);
    expect((await runCli(["unhold", 'public."Readings Feb"'], env)).code).toBe(0);
    expect(await holdCount()).toBe(0);
  });
});
